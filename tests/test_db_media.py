"""insert_media: one media row plus its embedding, atomically; the denormalized columns stay in step."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from support import libpq_sent

from perflab.db import InvalidInput, NewMedia, SearchFilters, VectorSearch, insert_media


@pytest.fixture()
def user(db_conn: psycopg.Connection) -> uuid.UUID:
    uid = uuid.uuid4()
    db_conn.execute("INSERT INTO users (id, email) VALUES (%s, %s)", (uid, f"{uid}@test.invalid"))
    return uid


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def count(conn: psycopg.Connection, table: str, user: uuid.UUID) -> int:
    return conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", (user,)).fetchone()[0]


def test_insert_then_search_finds_it(db_pool, db_conn, user) -> None:
    when = datetime(2025, 5, 1, 12, tzinfo=UTC)
    media = NewMedia(
        filename="beach.jpg",
        caption="a dog on the beach",
        tags=("dog", "beach"),
        width=640,
        height=480,
        file_size_bytes=12345,
        dominant_colors=[{"hex": "#336699", "share": 0.4}],
        uploaded_at=when,
    )
    mid = insert_media(db_pool, user, media, unit(1) * 3.0, model_name="test")
    row = db_conn.execute(
        "SELECT e.user_id, e.media_type, e.status, e.uploaded_at, e.embedding_model, e.is_primary, e.embedding,"
        " m.tags, m.dominant_colors FROM media_embeddings e JOIN media_files m ON m.id = e.media_file_id"
        " WHERE e.media_file_id = %s",
        (mid,),
    ).fetchone()
    assert row[:6] == (user, "image", "completed", when, "test", True)
    np.testing.assert_allclose(row[6].to_numpy(), unit(1), atol=1e-6)  # stored unit-norm
    assert row[7] == ["dog", "beach"] and row[8] == [{"hex": "#336699", "share": 0.4}]
    hits = VectorSearch(db_pool).search(user, unit(1), k=5)
    assert [h.media_id for h in hits] == [mid] and hits[0].caption == "a dog on the beach"


def test_unknown_user_writes_nothing(db_pool, db_conn) -> None:
    ghost = uuid.uuid4()
    with pytest.raises(InvalidInput, match="does not exist"):
        insert_media(db_pool, ghost, NewMedia(filename="x.jpg"), unit(2), model_name="test")
    assert count(db_conn, "media_files", ghost) == 0


def test_bad_embedding_leaves_no_media_row(db_pool, db_conn, user) -> None:
    with pytest.raises(InvalidInput, match="dimensions"):
        insert_media(db_pool, user, NewMedia(filename="x.jpg"), np.ones(3), model_name="test")
    with pytest.raises(InvalidInput, match="NaN"):
        insert_media(db_pool, user, NewMedia(filename="x.jpg"), np.full(384, np.nan), model_name="test")
    assert count(db_conn, "media_files", user) == 0 and count(db_conn, "media_embeddings", user) == 0


@pytest.mark.parametrize(
    "bad",
    [
        unit(3) + 1j,  # the imaginary part would be dropped silently
        [str(x) for x in unit(3)],  # numeric strings such as "0.05"
        np.array([str(x) for x in unit(3)]),
        unit(3).astype(object),
        [True] * 384,
        np.full(384, 1e39),  # beyond float32
        np.append(unit(3)[:-1], np.inf),
    ],
    ids=["complex", "str-list", "str-array", "object", "bool", "overflow", "inf"],
)
def test_an_embedding_that_is_not_real_floats_is_refused(db_pool, db_conn, user, bad: object) -> None:
    with pytest.raises(InvalidInput, match=r"real numbers|NaN or infinite"):
        insert_media(db_pool, user, NewMedia(filename="x.jpg"), bad, model_name="test")
    with pytest.raises(InvalidInput, match=r"real numbers|NaN or infinite"):
        VectorSearch(db_pool).search(user, bad, k=5)
    assert count(db_conn, "media_files", user) == 0


@pytest.mark.parametrize(
    "media",
    [
        NewMedia(filename=""),
        NewMedia(filename="a.jpg", media_type="gif"),
        NewMedia(filename="a.jpg", status="archived"),
        NewMedia(filename="a.jpg", file_size_bytes=-1),
        NewMedia(filename="a.jpg", uploaded_at=datetime(2025, 1, 1)),
    ],
)
def test_bad_fields_are_refused(db_pool, user, media: NewMedia) -> None:
    with pytest.raises(InvalidInput):
        insert_media(db_pool, user, media, unit(3), model_name="test")


def test_duplicate_id_is_refused_and_keeps_the_original(db_pool, db_conn, user) -> None:
    mid = uuid.uuid4()
    insert_media(db_pool, user, NewMedia(filename="a.jpg", id=mid), unit(4), model_name="test")
    with pytest.raises(InvalidInput, match="already exists"):
        insert_media(db_conn, user, NewMedia(filename="b.jpg", id=mid), unit(5), model_name="test")
    assert db_conn.execute("SELECT filename FROM media_files WHERE id = %s", (mid,)).fetchone() == ("a.jpg",)


def test_status_change_reaches_the_search_table(db_pool, db_conn, user) -> None:
    """Migration 0002's trigger: media_files.status/media_type edits are copied to media_embeddings."""
    mid = insert_media(
        db_pool, user, NewMedia(filename="a.jpg", status="processing"), unit(6), model_name="t"
    )
    vs = VectorSearch(db_pool)
    assert vs.search(user, unit(6), k=3) == []  # default filter: completed only
    db_conn.execute("UPDATE media_files SET status = 'completed', media_type = 'video' WHERE id = %s", (mid,))
    hits = vs.search(user, unit(6), k=3, filters=SearchFilters(media_type="video"))
    assert [h.media_id for h in hits] == [mid]


def test_the_new_media_record_carries_its_derivatives_and_only_its_owner_reads_them(
    db_pool, db_conn, user
) -> None:
    """One insert writes the renditions (no follow-up UPDATE); a search hit carries them (no second
    round trip); the service's loads are scoped to the user."""
    from perflab.db import QueryOptimizer

    derivs = [
        {"name": "master", "width": 64, "height": 48, "format": "jpeg", "key": "ab/ab-master.jpg", "bytes": 9}
    ]
    mid = insert_media(db_pool, user, NewMedia(filename="d.jpg", derivatives=derivs), unit(5), model_name="t")
    queries = QueryOptimizer(db_pool)
    for path in ("exact", "hnsw"):
        hits = VectorSearch(db_pool).search(user, unit(5), k=3, filters=SearchFilters(status=None), path=path)
        assert {h.media_id: h.derivatives for h in hits}[mid] == derivs
    assert queries.user_media(user, mid)["derivatives"] == derivs
    stranger = uuid.uuid4()
    assert VectorSearch(db_pool).search(stranger, unit(5), k=3, filters=SearchFilters(status=None)) == []
    assert queries.user_media(stranger, mid) is None
    assert insert_media(db_pool, user, NewMedia(filename="e.jpg"), unit(6), model_name="t")  # default: none


def test_counts_for_durability_checks(db_pool, db_conn, user) -> None:
    from perflab.db.media import count_media, count_user_media

    email = db_conn.execute("SELECT email FROM users WHERE id = %s", (user,)).fetchone()[0]
    before, mine = count_media(db_pool), count_user_media(db_pool, email)
    mid = insert_media(db_pool, user, NewMedia(filename="c.jpg"), unit(7), model_name="t")
    assert count_media(db_pool) == before + 1 and count_user_media(db_pool, email) == mine + 1
    assert count_media(db_pool, [mid, uuid.uuid4()]) == 1 and count_media(db_pool, []) == 0
    assert count_user_media(db_pool, "nobody@test.invalid") == 0


def test_a_single_read_is_one_round_trip_on_a_pooled_connection(
    base_settings, servers, db_pool, user, tmp_path
) -> None:
    """A pooled connection sends BEGIN, the statement and COMMIT (three round trips: the search path's
    hydrate paid them on every cold search); `borrow(autocommit=True)` runs the read in autocommit.
    Read from libpq's own protocol trace of the one connection the pool holds, so what the server was
    sent is what is checked."""
    from perflab.db import QueryOptimizer, borrow

    derivs = [{"name": "master", "width": 8, "height": 8, "format": "jpeg", "key": "cd/cd-m.jpg", "bytes": 3}]
    mid = insert_media(db_pool, user, NewMedia(filename="t.jpg", derivatives=derivs), unit(7), model_name="t")

    def sent_by(work) -> str:
        return libpq_sent(base_settings, servers.database_url, tmp_path / "libpq.trace", work)

    def plain(pool) -> None:
        with borrow(pool) as conn:
            conn.execute("SELECT 1").fetchall()

    baseline = sent_by(plain)
    assert "BEGIN" in baseline and "COMMIT" in baseline  # what a plain borrow costs

    def reads(pool) -> None:
        queries = QueryOptimizer(pool)
        assert queries.user_media(user, mid)["derivatives"] == derivs
        assert queries.user_with_stats(user) is not None

    sent = sent_by(reads)
    assert "BEGIN" not in sent and "COMMIT" not in sent
    assert sent.count("\tExecute\t") == 2  # the two reads, nothing else
