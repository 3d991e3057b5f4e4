"""Plan analysis on crafted bad queries: each recommendation names the node it is about."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from perflab.db import InvalidInput, QueryOptimizer, analyze_plan


@pytest.fixture(scope="module")
def crafted(db_conn: psycopg.Connection) -> psycopg.Connection:
    """20k-row tables without helpful indexes, a correlated pair of columns, a vector column."""
    db_conn.execute("DROP TABLE IF EXISTS crafted_big, crafted_small, crafted_vec")
    db_conn.execute(
        "CREATE TABLE crafted_big AS SELECT g AS id, 'name ' || g AS name, g % 100 AS a, g % 100 AS b,"
        " (g * 7919) % 20000 AS score FROM generate_series(1, 20000) g"
    )
    db_conn.execute("ALTER TABLE crafted_big ADD PRIMARY KEY (id)")
    db_conn.execute(
        "CREATE TABLE crafted_small AS SELECT g AS id, g % 100 AS a FROM generate_series(1, 5000) g"
    )
    db_conn.execute("CREATE TABLE crafted_vec (id int PRIMARY KEY, embedding vector(8))")
    rng = np.random.default_rng(0)
    with db_conn.cursor().copy("COPY crafted_vec (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "vector"])
        for i, v in enumerate(rng.standard_normal((20000, 8)).astype(np.float32)):
            copy.write_row((i, v))
    db_conn.execute("ANALYZE crafted_big, crafted_small, crafted_vec")
    return db_conn


def test_seq_scan_on_a_large_table(crafted) -> None:
    a = analyze_plan(crafted, "SELECT * FROM crafted_big WHERE name = %s", ("name 77",))
    [rec] = [r for r in a.recommendations if r.kind == "seq_scan"]
    assert rec.node.startswith("Seq Scan on crafted_big #")
    assert "read 20,000 rows to keep 1" in rec.message
    assert rec.suggestion == "CREATE INDEX CONCURRENTLY ON crafted_big (name)"


def test_an_index_lookup_has_nothing_to_recommend(crafted) -> None:
    a = analyze_plan(crafted, "SELECT * FROM crafted_big WHERE id = %s", (77,))
    assert a.recommendations == []
    assert a.nodes[0].node_type == "Index Scan" and a.execution_ms >= 0


def test_sort_without_an_index(crafted) -> None:
    a = analyze_plan(crafted, "SELECT id FROM crafted_big ORDER BY score DESC LIMIT 10")
    sorts = [r for r in a.recommendations if r.kind == "sort"]
    assert sorts and sorts[0].node.startswith("Sort #")
    assert "sorted 20,000 rows by score DESC" in sorts[0].message
    assert sorts[0].suggestion == "CREATE INDEX CONCURRENTLY ON crafted_big (score DESC)"


def test_row_misestimate_on_correlated_columns(crafted) -> None:
    # a and b are equal in every row; the planner multiplies 1% by 1% and expects 2 rows of 200.
    a = analyze_plan(crafted, "SELECT * FROM crafted_big WHERE a = 1 AND b = 1")
    [rec] = [r for r in a.recommendations if r.kind == "misestimate"]
    assert rec.node.startswith("Seq Scan on crafted_big #")
    assert "got 200" in rec.message and "under" in rec.message
    assert (
        "ANALYZE crafted_big" in rec.suggestion
        and "CREATE STATISTICS ON a, b FROM crafted_big" in rec.suggestion
    )


def test_nested_loop_over_a_large_outer(crafted) -> None:
    crafted.execute("SET enable_hashjoin = off")
    crafted.execute("SET enable_mergejoin = off")
    try:
        a = analyze_plan(
            crafted,
            "SELECT count(*) FROM crafted_small s JOIN crafted_big b ON b.score = s.id WHERE s.a < 30",
        )
    finally:
        crafted.execute("RESET enable_hashjoin")
        crafted.execute("RESET enable_mergejoin")
    [rec] = [r for r in a.recommendations if r.kind == "nested_loop"]
    assert rec.node.startswith("Nested Loop #")
    assert "20,000 times" in rec.message and "30,000,000 inner rows" in rec.message
    assert rec.suggestion == "CREATE INDEX CONCURRENTLY ON crafted_small (id)"


def test_vector_order_by_without_an_index(crafted) -> None:
    q = np.ones(8, dtype=np.float32)
    sql = "SELECT id FROM crafted_vec ORDER BY embedding <=> %s LIMIT 5"
    a = analyze_plan(crafted, sql, (q,))
    [rec] = [r for r in a.recommendations if r.kind == "vector_sort"]
    assert rec.node.startswith("Sort #") and "sorted 20,000 rows" in rec.message
    assert "crafted_vec USING hnsw" in rec.suggestion
    crafted.execute("CREATE INDEX crafted_vec_hnsw ON crafted_vec USING hnsw (embedding vector_cosine_ops)")
    try:
        b = analyze_plan(crafted, sql, (q,))
    finally:
        crafted.execute("DROP INDEX crafted_vec_hnsw")
    assert "vector_sort" not in b.kinds
    assert b.node("Index Scan on crafted_vec using crafted_vec_hnsw")


def test_analyze_rolls_back_what_the_statement_did(crafted) -> None:
    a = analyze_plan(crafted, "DELETE FROM crafted_big WHERE id <= 100")
    assert a.nodes[0].node_type == "ModifyTable"
    assert crafted.execute("SELECT count(*) FROM crafted_big").fetchone() == (20000,)


def test_one_statement_only(crafted) -> None:
    with pytest.raises(InvalidInput):
        analyze_plan(crafted, "SELECT 1; DROP TABLE crafted_big")
    assert crafted.execute("SELECT count(*) FROM crafted_big").fetchone() == (20000,)


def test_query_optimizer_analyze_through_the_pool(db_pool, crafted) -> None:
    a = QueryOptimizer(db_pool).analyze("SELECT * FROM crafted_big WHERE name LIKE %s", ("name 7%",))
    [rec] = a.recommendations
    assert rec.kind == "seq_scan" and rec.suggestion == "CREATE INDEX CONCURRENTLY ON crafted_big (name)"
    assert str(rec).startswith(rec.node)


def test_leading_wildcard_gets_no_btree_advice(crafted) -> None:
    a = analyze_plan(crafted, "SELECT * FROM crafted_big WHERE name LIKE '%77'")
    [rec] = [r for r in a.recommendations if r.kind == "seq_scan"]
    assert rec.suggestion is None and "pg_trgm" in rec.message


def test_no_misestimate_blamed_on_a_limit(crafted) -> None:
    # Below LIMIT the sort emits 5 of the ~20,000 rows it planned: that is not a misestimate.
    a = analyze_plan(crafted, "SELECT * FROM crafted_big ORDER BY score LIMIT 5")
    assert "misestimate" not in a.kinds and "sort" in a.kinds


def test_vector_index_starved_by_a_filter_after_it(crafted) -> None:
    """The seed's query shape: the HNSW scan yields ef_search candidates, a join filter drops most."""
    crafted.execute(
        "CREATE INDEX IF NOT EXISTS crafted_vec_hnsw ON crafted_vec USING hnsw (embedding vector_l2_ops)"
    )
    crafted.execute("DROP TABLE IF EXISTS crafted_owner")
    crafted.execute(
        "CREATE TABLE crafted_owner AS SELECT g AS id, g % 50 AS owner FROM generate_series(0, 19999) g"
    )
    crafted.execute("ALTER TABLE crafted_owner ADD PRIMARY KEY (id)")
    crafted.execute("ANALYZE crafted_owner")
    q = np.zeros(8, dtype=np.float32)
    with crafted.transaction():
        crafted.execute("SET LOCAL hnsw.iterative_scan = off")
        crafted.execute("SET LOCAL hnsw.ef_search = 40")
        crafted.execute("SET LOCAL enable_seqscan = off")
        a = analyze_plan(
            crafted,
            "SELECT v.id FROM crafted_vec v JOIN crafted_owner o ON o.id = v.id WHERE o.owner = 7"
            " ORDER BY v.embedding <-> %s LIMIT 20",
            (q,),
        )
    starved = [r for r in a.recommendations if r.kind == "vector_starved"]
    assert starved, [str(r) for r in a.recommendations]
    assert starved[0].node.startswith("Limit #") and "returned" in starved[0].message
    assert starved[0].suggestion == "SET LOCAL hnsw.iterative_scan = relaxed_order"
