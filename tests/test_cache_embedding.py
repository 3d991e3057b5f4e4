"""EmbeddingCache on the real Redis: exact float32 round trips, batches, foreign values, namespaces."""

from __future__ import annotations

import re

import numpy as np
import pytest
import redis

from perflab.cache import CacheKeyError, CacheManager, CacheValueError, EmbeddingCache

pytestmark = pytest.mark.both_redis  # each Redis test runs on a single server and on the cluster

DIM = 16


@pytest.fixture()
def cache(cache_manager: CacheManager) -> EmbeddingCache:
    return EmbeddingCache(cache_manager, model="minilm", dim=DIM, version="v1", ttl=120)


def _vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_exact_float32_round_trip(cache: EmbeddingCache) -> None:
    vec = _vectors(1)[0]
    vec[0], vec[1] = np.float32(1e-38), np.float32(-3.4e38)  # extremes survive bit for bit
    assert cache.set("a text", vec)
    got = cache.get("a text")
    assert got is not None and got.dtype == np.float32 and got.shape == (DIM,)
    assert got.tobytes() == vec.tobytes()


def test_float64_input_is_stored_as_its_float32_value(cache: EmbeddingCache) -> None:
    vec64 = np.random.default_rng(1).standard_normal(DIM)
    cache.set("t", vec64)
    assert np.array_equal(cache.get("t"), vec64.astype(np.float32))


def test_get_many_keeps_order_and_takes_one_round_trip(
    cache: EmbeddingCache, cache_manager: CacheManager
) -> None:
    texts = [f"text {i}" for i in range(100)]
    vecs = _vectors(100)
    assert cache.set_many(texts, vecs)
    got = cache.get_many([*texts[:50], "never stored", *texts[50:]])
    assert got[50] is None
    assert all(np.array_equal(g, v) for g, v in zip(got[:50] + got[51:], vecs, strict=True))
    latency = cache_manager.stats().latency
    assert latency["get_many"].count == 1 and latency["set_many"].count == 1
    assert cache.get_many([]) == [] and cache.set_many([], np.empty((0, DIM)))


def test_a_wrong_dimension_or_foreign_value_is_a_miss(
    cache: EmbeddingCache, cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    cache.set("shared text", _vectors(1)[0])
    wider = EmbeddingCache(cache_manager, model="minilm", dim=DIM * 2, version="v1")
    assert wider.key("shared text") == cache.key("shared text")  # same namespace, other dimension
    assert wider.get("shared text") is None
    assert wider.get_many(["shared text"]) == [None]
    full = cache_manager.key(cache.key("garbage"))
    redis_client.set(full, b"\x00" * (8 + 4 * DIM))
    assert cache.get("garbage") is None
    redis_client.set(full, cache.encode(_vectors(1)[0])[:-1])  # truncated
    assert cache.get("garbage") is None
    assert cache_manager.stats().corrupt == 4


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(DIM - 1),
        np.zeros((2, DIM)),
        [1.0, "x"] + [0.0] * (DIM - 2),
        np.full(DIM, np.nan),
        np.full(DIM, np.inf),
        np.full(DIM, 1e39),  # finite as float64, infinite as float32
        np.ones(DIM) + 1j,  # numpy would drop the imaginary part with only a warning
        np.ones(DIM, dtype=np.complex64),
        ["1.5"] * DIM,  # numeric strings numpy would parse
        np.array(["1.5"] * DIM),
        np.ones(DIM, dtype=object),  # an object array numpy would unpack
        [True] * DIM,
        np.ones(DIM, dtype=bool),
        [None] * DIM,
        "1.5",
    ],
    ids=lambda v: type(v).__name__ + ":" + str(getattr(v, "dtype", "")),
)
def test_bad_vectors_raise_and_store_nothing(
    cache: EmbeddingCache, redis_client: redis.Redis, bad: object
) -> None:
    with pytest.raises(CacheValueError):
        cache.set("t", bad)
    with pytest.raises(CacheValueError):
        cache.set_many(["t", "u"], [bad, bad])
    assert not redis_client.exists(cache.manager.key(cache.key("t")))


def test_integer_vectors_are_real_numbers_and_accepted(cache: EmbeddingCache) -> None:
    assert cache.set("ints", np.arange(DIM))
    assert np.array_equal(cache.get("ints"), np.arange(DIM, dtype=np.float32))


def test_key_is_model_version_and_full_sha256(cache: EmbeddingCache) -> None:
    assert re.fullmatch(r"emb:minilm:v1:[0-9a-f]{64}", cache.key("anything"))
    assert cache.key("a") != cache.key("a ")
    assert cache.key("\ud800 lone surrogate") != cache.key("")
    with pytest.raises(CacheKeyError):
        EmbeddingCache(cache.manager, model="bad*model", dim=4)
    with pytest.raises(CacheKeyError):
        EmbeddingCache(cache.manager, model="m", dim=4, version="v1:x")


def test_ttl_invalidate_and_clear_by_namespace(
    cache: EmbeddingCache, cache_manager: CacheManager, redis_client: redis.Redis
) -> None:
    other_version = EmbeddingCache(cache_manager, model="minilm", dim=DIM, version="v2")
    other_model = EmbeddingCache(cache_manager, model="minilm-x", dim=DIM, version="v1")
    vec = _vectors(1)[0]
    for c in (cache, other_version, other_model):
        c.set_many(["a", "b", "c"], [vec, vec, vec])
    assert 0 < redis_client.pttl(cache_manager.key(cache.key("a"))) <= 120_000
    assert cache.invalidate("a") and not cache.invalidate("a")
    assert cache.get("a") is None and cache.get("b") is not None
    assert cache.clear() == 2
    assert cache.get_many(["b", "c"]) == [None, None]
    assert all(v is not None for v in other_version.get_many(["a", "b", "c"]))
    assert all(v is not None for v in other_model.get_many(["a", "b", "c"]))
