"""The synthetic library: reproducible, heavy-tailed, idempotent; and the Zipf query sampler."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import psycopg
import pytest

from perflab.config import Settings
from perflab.db import (
    InvalidInput,
    NewMedia,
    QueryVocabulary,
    SeedConflict,
    VectorSearch,
    ZipfQuerySampler,
    connect,
    drop_schema,
    forget_uploads,
    generate_library,
    insert_media,
    migrate,
    seed_library,
    seeded_email,
)
from perflab.db.seed import user_sizes
from perflab.db.vocabulary import SCENES, SUBJECTS
from perflab.embed import HashingEmbedder
from perflab.servers import Endpoints


@pytest.fixture()
def schema(servers: Endpoints, base_settings: Settings) -> Iterator[tuple[Settings, psycopg.Connection]]:
    s = base_settings.replace(db_schema=f"{base_settings.db_schema}_seed{uuid.uuid4().hex[:6]}")
    with connect(s, servers.database_url) as conn:
        migrate(conn, s)
        yield s, conn
        drop_schema(conn, s.db_schema)


def test_generation_is_reproducible() -> None:
    a = generate_library(media=400, users=7, seed=5)
    b = generate_library(media=400, users=7, seed=5)
    c = generate_library(media=400, users=7, seed=6)
    assert a == b
    assert [m.media.id for m in a.media] != [m.media.id for m in c.media]
    assert len(a.media) == 400 and len(a.users) == 7 and sum(a.sizes) == 400
    assert [u.email for u in a.users] == [seeded_email(n) for n in range(1, 8)]


def test_user_sizes_are_heavy_tailed() -> None:
    sizes = user_sizes(100_000, 200, np.random.default_rng(0))
    assert sum(sizes) == 100_000 and sizes == sorted(sizes, reverse=True)
    median = sizes[len(sizes) // 2]
    assert 100 <= median <= 1000  # most users: hundreds
    assert sizes[0] >= 10_000 and sizes[0] >= 20 * median  # a few: tens of thousands


def test_captions_and_media_look_real() -> None:
    lib = generate_library(media=2000, users=10, seed=1)
    kinds = Counter(m.media.media_type for m in lib.media)
    assert kinds["image"] > kinds["video"] > kinds["document"] > 0
    statuses = Counter(m.media.status for m in lib.media)
    assert statuses["completed"] > 0.9 * len(lib.media)
    images = [m.media for m in lib.media if m.media.media_type == "image"]
    assert all(any(t.phrase in x.caption for t in SUBJECTS) for x in images)
    assert all(any(t.phrase in x.caption for t in SCENES) for x in images)
    assert len({x.caption for x in images}) > 0.9 * len(images)  # composed, rarely repeated
    by_user = {u.id: u for u in lib.users}
    assert all(m.media.uploaded_at >= by_user[m.user_id].created_at for m in lib.media)


def test_seeding_twice_is_a_no_op_and_another_seed_replaces(schema) -> None:
    s, conn = schema
    emb = HashingEmbedder(s.embedding_dim)
    conn.execute("INSERT INTO users (email) VALUES ('real-person@example.org')")
    first = seed_library(s, conn, media=600, users=8, seed=3, embedder=emb, progress=False)
    assert first.created and first.load and first.load.media == 600
    ids = conn.execute("SELECT id FROM media_files ORDER BY id").fetchall()
    again = seed_library(s, conn, media=600, users=8, seed=3, embedder=emb, progress=False)
    assert not again.created and again.sizes == first.sizes
    assert conn.execute("SELECT id FROM media_files ORDER BY id").fetchall() == ids
    other = seed_library(s, conn, media=300, users=4, seed=4, embedder=emb, progress=False)
    assert other.created
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE firebase_uid LIKE 'seed:%%'), count(*) FROM users"
    ).fetchone()
    assert counts == (4, 5)  # the real person is still there
    assert conn.execute("SELECT count(*) FROM media_files").fetchone() == (300,)
    assert conn.execute("SELECT count(*) FROM media_embeddings").fetchone() == (300,)
    # same arguments after a change of seed: the same library again, ids included
    seed_library(s, conn, media=600, users=8, seed=3, embedder=emb, progress=False)
    assert conn.execute("SELECT id FROM media_files ORDER BY id").fetchall() == ids


def test_seeding_never_deletes_media_it_did_not_make(schema) -> None:
    """Issue 16.6: a lab run that uploaded into a bench library made its count 601, not 600, and the
    next seed re-seeded, deleting the upload by cascade. Now it refuses, unless told to replace."""
    s, conn = schema
    emb = HashingEmbedder(s.embedding_dim)
    seed_library(s, conn, media=600, users=8, seed=3, embedder=emb, progress=False)
    uid = conn.execute("SELECT id FROM users WHERE email = %s", (seeded_email(1),)).fetchone()[0]
    upload = insert_media(
        conn, uid, NewMedia(filename="mine.jpg", caption="my own photo"), emb.embed(["my own photo"])[0],
        model_name=emb.model_name,
    )  # fmt: skip
    for media, seed in ((600, 3), (300, 4)):  # the same library again, and another one
        with pytest.raises(SeedConflict, match="did not make") as info:
            seed_library(s, conn, media=media, users=8, seed=seed, embedder=emb, progress=False)
        assert "1 media" in str(info.value) and "--replace" in str(info.value)
        assert conn.execute("SELECT count(*) FROM media_files WHERE id = %s", (upload,)).fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM media_files").fetchone() == (601,)
    assert forget_uploads(conn) == 1  # what a load test leaves behind, taken back: the seeded library again
    assert conn.execute("SELECT count(*) FROM media_files WHERE id = %s", (upload,)).fetchone() == (0,)
    kept = seed_library(s, conn, media=600, users=8, seed=3, embedder=emb, progress=False)
    assert not kept.created and conn.execute("SELECT count(*) FROM media_files").fetchone() == (600,)
    insert_media(
        conn, uid, NewMedia(filename="again.jpg"), emb.embed(["again"])[0], model_name=emb.model_name
    )
    again = seed_library(s, conn, media=600, users=8, seed=3, embedder=emb, progress=False, replace=True)
    assert again.created
    assert conn.execute("SELECT count(*) FROM media_files").fetchone() == (600,)


def test_another_model_is_another_library(schema) -> None:
    """The embedder's model id is in the fingerprint: vectors of one model are never kept for another."""
    s, conn = schema
    seed_library(
        s, conn, media=200, users=3, seed=3, embedder=HashingEmbedder(s.embedding_dim), progress=False
    )
    other = _Renamed(HashingEmbedder(s.embedding_dim), "another-model")
    assert seed_library(s, conn, media=200, users=3, seed=3, embedder=other, progress=False).created
    assert conn.execute("SELECT DISTINCT embedding_model FROM media_embeddings").fetchall() == [
        ("another-model",)
    ]


class _Renamed:
    """A real embedder under another model id (what a second model looks like to the seeder)."""

    def __init__(self, inner: HashingEmbedder, name: str) -> None:
        self.inner, self.model_name, self.dim = inner, name, inner.dim

    def warm(self) -> None:
        self.inner.warm()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)


def test_seeded_library_is_searchable(schema) -> None:
    s, conn = schema
    emb = HashingEmbedder(s.embedding_dim)
    result = seed_library(s, conn, media=800, users=5, seed=9, embedder=emb, progress=False)
    uid, n = conn.execute(
        "SELECT u.id, count(m.id) FROM users u JOIN media_files m ON m.user_id = u.id"
        " WHERE u.email = %s GROUP BY u.id",
        (seeded_email(1),),
    ).fetchone()
    assert n == result.sizes[0] == max(result.sizes)
    hits = VectorSearch(conn).search(uid, emb.embed(["dog on the beach"])[0], k=5)
    assert len(hits) == 5 and all("beach" in h.caption for h in hits)
    # completed images carry their renditions (their URLs are minted per search response), others none
    rows = conn.execute("SELECT media_type, status, width, height, derivatives FROM media_files").fetchall()
    for media_type, status, w, h, derivatives in rows:
        if media_type == "image" and status == "completed":
            assert {"master", "thumb"} <= {d["name"] for d in derivatives}, (w, h, derivatives)
        else:
            assert derivatives == []
    assert any(h.derivatives for h in hits)


@pytest.mark.parametrize("size", [(4032, 3024), (1080, 1920), (1200, 1200), (300, 200), (2048, 1536)])
def test_seeded_renditions_are_the_pipelines_plan(size: tuple[int, int]) -> None:
    """The seed's derivative records name and size what the image pipeline would store for the photo."""
    from perflab.db.seed import seeded_derivatives
    from perflab.images.derivatives import fit_within, plan
    from perflab.images.pipeline import PipelineOptions

    opts = PipelineOptions()
    master = fit_within(size, opts.master_box)
    planned = {"master": master} | {
        s.name: s.size for s in plan(master, opts.responsive_widths, opts.thumbnail_size)
    }
    seeded = seeded_derivatives(uuid.UUID(int=7), *size)
    assert {d["name"]: (d["width"], d["height"]) for d in seeded} == planned
    keys = [d["key"] for d in seeded]
    assert len(set(keys)) == len(keys) and all(
        k.endswith(f"-{d['name']}.jpg") for k, d in zip(keys, seeded, strict=True)
    )


def test_wrong_embedder_dimension_is_refused(schema) -> None:
    s, conn = schema
    with pytest.raises(InvalidInput, match="384"):
        seed_library(s, conn, media=10, users=2, seed=0, embedder=HashingEmbedder(64), progress=False)


def test_zipf_sampler() -> None:
    sampler = ZipfQuerySampler(1)
    vocab = sampler.vocabulary
    assert len(vocab) > 1000 and len(set(vocab.queries)) == len(vocab)
    assert vocab.queries == QueryVocabulary(1).queries != QueryVocabulary(0).queries
    a, b = sampler.sample(5000), ZipfQuerySampler(1).sample(5000)
    assert a == b and a != ZipfQuerySampler(2).sample(5000)
    freq = Counter(a)
    top = vocab.queries[0]
    assert freq[top] > 5000 * 0.05  # the head repeats
    assert freq[top] > 10 * freq.get(vocab.queries[99], 0)
    assert len(freq) > 300  # and the tail is long
    assert set(a) <= set(vocab.queries)
    # queries are about the captions: subject words, and subject + scene phrases
    assert "puppy" in vocab.queries and "dog on the beach" in vocab.queries
