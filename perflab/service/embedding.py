"""Text to vector through the embedding cache: what search (the query) and upload (the caption) share.

Uploads depend on this, not on the search service: a caption is embedded like a query, so a search for
the caption finds the upload, and the cached vector serves both.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from perflab.cache import EmbeddingCache
from perflab.embed import Embedder
from perflab.timing import StageTimer


class CachedEmbedder:
    def __init__(self, embedder: Embedder, cache: EmbeddingCache) -> None:
        self.inner = embedder
        self.cache = cache

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def embed(self, text: str, timer: StageTimer) -> npt.NDArray[np.float32]:
        """One text's vector; the cache stages and the model stage are timed apart."""
        with timer.stage("embedding_cache"):
            vec = self.cache.get(text)
        if vec is None:
            with timer.stage("embed"):
                vec = self.inner.embed([text])[0]
            with timer.stage("embedding_cache"):
                self.cache.set(text, vec)
        return vec
