"""Choose the embedder from settings: `auto` | `minilm-onnx-int8` | `minilm-onnx` | `minilm` | `hashing` | `openai`."""

from __future__ import annotations

import os

from perflab.config import Settings
from perflab.embed.base import Embedder
from perflab.embed.hashing import HashingEmbedder
from perflab.embed.minilm import DIM as MINILM_DIM
from perflab.embed.minilm import MiniLMEmbedder, minilm_available
from perflab.embed.onnx import OnnxMiniLMEmbedder, models_dir, onnx_available
from perflab.embed.openai_http import OpenAIEmbedder
from perflab.errors import ConfigError

CHOICES = ("auto", "minilm-onnx-int8", "minilm-onnx", "minilm", "hashing", "openai")


def resolve_choice(settings: Settings) -> str:
    """The concrete embedder `settings.embedder` names. `auto` is MiniLM on ONNX int8 when onnxruntime
    is installed and the model is exported (or exportable here), else torch MiniLM when the ml extra
    is installed, else hashing; MiniLM only for a 384-d column."""
    choice = settings.embedder.strip().lower()
    if choice != "auto":
        return choice
    if settings.embedding_dim != MINILM_DIM:
        return "hashing"
    if onnx_available(settings.home):
        return "minilm-onnx-int8"
    return "minilm" if minilm_available() else "hashing"


def _threads() -> int:
    """onnxruntime's intra-op threads: OMP_NUM_THREADS (`perflab serve` sets it to cores / workers), else 1."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


def make_embedder(settings: Settings, *, threads: int | None = None) -> Embedder:
    """Build (but do not load) the configured embedder; its dimension must match the vector column.
    `threads`: onnxruntime's intra-op threads (default: OMP_NUM_THREADS, else 1); seeding, with
    nothing else running, passes every core."""
    choice = resolve_choice(settings)
    dim = settings.embedding_dim
    if choice in ("minilm", "minilm-onnx", "minilm-onnx-int8") and dim != MINILM_DIM:
        raise ConfigError(f"MiniLM makes {MINILM_DIM}-d vectors but PERFLAB_EMBEDDING_DIM is {dim}")
    if choice in ("minilm-onnx", "minilm-onnx-int8"):
        if not onnx_available(settings.home):
            raise ConfigError(
                f"PERFLAB_EMBEDDER={choice} needs onnxruntime and tokenizers, and the model exported under "
                f"{models_dir(settings.home)} (`perflab embed export`, which needs the ml extra)"
            )
        return OnnxMiniLMEmbedder(
            models_dir(settings.home), quantized=choice == "minilm-onnx-int8", threads=threads or _threads()
        )
    if choice == "minilm":
        if not minilm_available():
            raise ConfigError("PERFLAB_EMBEDDER=minilm needs the ml extra (pip install -e '.[ml]')")
        return MiniLMEmbedder()
    if choice == "hashing":
        return HashingEmbedder(dim)
    if choice == "openai":
        return OpenAIEmbedder(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key,
            dim=dim,
        )
    raise ConfigError(f"PERFLAB_EMBEDDER={settings.embedder!r}: choose one of {', '.join(CHOICES)}")
