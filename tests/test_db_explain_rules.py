"""Each plan rule of perflab.db.explain on its own, on hand-written EXPLAIN JSON: one test per rule,
each with the case that fires it and the nearest case that must not."""

from __future__ import annotations

from typing import Any

from perflab.db import explain
from perflab.db.explain import RULES, PlanNode, Thresholds

TH = Thresholds()


def nodes_of(plan: dict[str, Any]) -> list[PlanNode]:
    out: list[PlanNode] = []
    explain._flatten(plan, 0, out, None)
    return out


def node(kind: str, rows: float = 1, plan_rows: float | None = None, loops: int = 1, kids=(), **raw: Any):
    return {"Node Type": kind, "Actual Rows": rows, "Plan Rows": rows if plan_rows is None else plan_rows,
            "Actual Loops": loops, "Plans": list(kids), **raw}  # fmt: skip


def fire(rule, plan: dict[str, Any], at: int = 0):
    ns = nodes_of(plan)
    return rule(ns[at], ns, TH)


def test_every_rule_is_listed() -> None:
    assert {r.__name__ for r in RULES} == {n for n in dir(explain) if n.startswith("_rule_")}


def test_seq_scan() -> None:
    big = node("Seq Scan", 3, **{"Relation Name": "t", "Rows Removed by Filter": 20_000, "Filter": "(a = 1)"})
    rec = fire(explain._rule_seq_scan, big)
    assert rec.kind == "seq_scan" and rec.suggestion == "CREATE INDEX CONCURRENTLY ON t (a)"
    assert fire(explain._rule_seq_scan, {**big, "Rows Removed by Filter": 100}) is None
    like = {**big, "Filter": "(name ~~ '%x'::text)"}
    assert fire(explain._rule_seq_scan, like).suggestion is None


def test_index_filter() -> None:
    scan = node("Index Scan", 5, **{"Relation Name": "t", "Index Cond": "(u = 1)", "Filter": "(b = 2)",
                                    "Rows Removed by Filter": 50_000})  # fmt: skip
    rec = fire(explain._rule_index_filter, scan)
    assert rec.kind == "index_filter" and rec.suggestion == "CREATE INDEX CONCURRENTLY ON t (u, b)"
    assert fire(explain._rule_index_filter, {**scan, "Rows Removed by Filter": 10}) is None


def test_vector_sort() -> None:
    scan = node("Seq Scan", 20_000, **{"Relation Name": "v"})
    sort = node("Sort", 10, kids=[scan], **{"Sort Key": ["(embedding <=> '[1,2]'::vector)"]})
    assert fire(explain._rule_vector_sort, sort).suggestion.startswith(
        "CREATE INDEX CONCURRENTLY ON v USING hnsw"
    )
    assert fire(explain._rule_sort, sort) is None  # a vector sort is not a plain sort
    small = node("Sort", 10, kids=[node("Seq Scan", 100, **{"Relation Name": "v"})], **sort_keys(sort))
    assert fire(explain._rule_vector_sort, small) is None


def sort_keys(n: dict[str, Any]) -> dict[str, Any]:
    return {"Sort Key": n["Sort Key"]}


def test_sort() -> None:
    scan = node("Seq Scan", 20_000, **{"Relation Name": "t"})
    sort = node("Sort", 10, kids=[scan], **{"Sort Key": ["t.score DESC"], "Sort Method": "top-N heapsort"})
    assert fire(explain._rule_sort, sort).suggestion == "CREATE INDEX CONCURRENTLY ON t (score DESC)"
    small = node(
        "Sort", 10, kids=[node("Seq Scan", 500, **{"Relation Name": "t"})], **{"Sort Key": ["score"]}
    )
    assert fire(explain._rule_sort, small) is None


def test_sort_spill() -> None:
    sort = node("Sort", 10, kids=[node("Seq Scan", 50)], **{"Sort Key": ["a"], "Sort Space Type": "Disk",
                                                            "Sort Space Used": 4096})  # fmt: skip
    assert "4096 kB" in fire(explain._rule_sort_spill, sort).message
    assert fire(explain._rule_sort_spill, {**sort, "Sort Space Type": "Memory"}) is None


def test_vector_starved() -> None:
    scan = node("Index Scan", 3, 40, **{"Relation Name": "v", "Order By": "(embedding <-> '[0]'::vector)"})
    limit = node("Limit", 3, 20, kids=[node("Nested Loop", 3, 40, kids=[scan])])
    rec = fire(explain._rule_vector_starved, limit)
    assert rec.suggestion == "SET LOCAL hnsw.iterative_scan = relaxed_order"
    assert fire(explain._rule_vector_starved, {**limit, "Actual Rows": 20}) is None
    plain = node("Limit", 3, 20, kids=[node("Index Scan", 3, 40, **{"Relation Name": "t"})])
    assert fire(explain._rule_vector_starved, plain) is None


def test_hash_spill() -> None:
    assert fire(explain._rule_hash_spill, node("Hash", 10, **{"Hash Batches": 8})).kind == "hash_spill"
    assert fire(explain._rule_hash_spill, node("Hash", 10, **{"Hash Batches": 1})) is None


def test_misestimate_is_reported_where_it_starts() -> None:
    scan = node("Seq Scan", 200, 2, **{"Relation Name": "t", "Filter": "((a = 1) AND (b = 1))"})
    agg = node("Aggregate", 200, 2, kids=[scan])
    rec = fire(explain._rule_misestimate, agg, at=1)
    assert "CREATE STATISTICS ON a, b FROM t" in rec.suggestion and "under" in rec.message
    assert fire(explain._rule_misestimate, agg, at=0) is None  # its child is where it starts
    under_limit = node("Limit", 5, 5, kids=[node("Sort", 5, 20_000)])
    assert fire(explain._rule_misestimate, under_limit, at=1) is None


def test_nested_loop() -> None:
    outer = node("Seq Scan", 2_000, **{"Relation Name": "s"})
    inner = node(
        "Seq Scan", 10, loops=2_000, **{"Relation Name": "b", "Alias": "b", "Filter": "(b.score = s.id)"}
    )
    loop = node("Nested Loop", 10, kids=[outer, inner])
    rec = fire(explain._rule_nested_loop, loop)
    assert rec.suggestion == "CREATE INDEX CONCURRENTLY ON b (score)"
    lookup = node(
        "Nested Loop", 10, kids=[outer, node("Index Scan", 1, loops=2_000, **{"Relation Name": "b"})]
    )
    assert fire(explain._rule_nested_loop, lookup) is None
