"""Text embedders behind one interface: a batch of texts in, a float32 (n, dim) unit-norm array out."""

from perflab.embed.base import Embedder, EmbeddingError, InvalidText
from perflab.embed.batching import BatchingEmbedder
from perflab.embed.factory import make_embedder
from perflab.embed.hashing import HashingEmbedder
from perflab.embed.latency import LatencyEmbedder
from perflab.embed.minilm import MiniLMEmbedder, minilm_available
from perflab.embed.onnx import ModelNotExported, OnnxMiniLMEmbedder, onnx_available
from perflab.embed.openai_http import OpenAIEmbedder

__all__ = [
    "BatchingEmbedder",
    "Embedder",
    "EmbeddingError",
    "HashingEmbedder",
    "InvalidText",
    "LatencyEmbedder",
    "MiniLMEmbedder",
    "ModelNotExported",
    "OnnxMiniLMEmbedder",
    "OpenAIEmbedder",
    "make_embedder",
    "minilm_available",
    "onnx_available",
]
