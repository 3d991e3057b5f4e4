"""Query analysis: run EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON), walk the plan tree, recommend fixes.

The seed searched the plan's text for "Seq Scan" and "rows=1000"; this reads each node's numbers:
- a sequential scan that reads many rows to keep few (an index on the filtered columns),
- a large Sort, or one that spilled to disk (an index in that order, or work_mem),
- a row estimate off by 10x or more, reported where it starts, not on every parent (ANALYZE,
  extended statistics),
- a nested loop over a large outer input whose inner side is not an index lookup (a hash join; an
  index on the join key),
- ORDER BY a vector distance done by a Sort instead of the vector index,
- an index scan that throws most of what it reads away (a composite index).
Each recommendation names its node ("Seq Scan on media_files #3", numbered in plan order).

The statement really runs (that is what ANALYZE means), inside a transaction that is always rolled
back, so analyzing an UPDATE or DELETE changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql as psql

from perflab.db.errors import InvalidInput

_VECTOR_OPS = re.compile(r"<=>|<->|<#>|<\+>|<~>|<%>")
_LEADING_WILDCARD = re.compile(r"~~\*? '%")
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_FILTER_COLUMN = re.compile(
    r"([a-z_][a-z0-9_]*)\)?\s*(?:=|<>|!=|<=|>=|<|>|~~\*?|!~~\*?|IS\b|@>|&&)", re.IGNORECASE
)
_NOT_COLUMNS = {"and", "or", "not", "any", "all", "null", "true", "false", "text", "uuid", "numeric"}


@dataclass(frozen=True)
class Thresholds:
    """When a number in the plan is worth a recommendation."""

    large_rows: int = 10_000  # a scan or sort over this many rows is large
    removed_fraction: float = 0.9  # ...and an index pays when the filter drops this share of them
    misestimate_factor: float = 10.0
    misestimate_min_rows: int = 100  # ignore 3-vs-40 style misses on tiny inputs
    nested_loop_outer_rows: int = 1_000
    vector_sort_rows: int = 5_000  # above perflab's exact per-user path (see vector.py)


@dataclass(frozen=True)
class PlanNode:
    """One node of the plan, its numbers flattened (rows are per loop, as PostgreSQL reports them)."""

    id: int
    depth: int
    node_type: str
    relation: str | None
    index: str | None
    plan_rows: float
    actual_rows: float
    loops: int
    raw: dict[str, Any] = field(repr=False)
    children: tuple[int, ...] = ()
    parent: int | None = None

    @property
    def label(self) -> str:
        on = f" on {self.relation}" if self.relation else ""
        using = f" using {self.index}" if self.index else ""
        return f"{self.node_type}{on}{using} #{self.id}"

    @property
    def total_rows(self) -> float:
        return self.actual_rows * self.loops

    @property
    def removed_rows(self) -> float:
        return float(self.raw.get("Rows Removed by Filter", 0)) * self.loops


@dataclass(frozen=True)
class Recommendation:
    kind: str  # seq_scan | sort | sort_spill | hash_spill | misestimate | nested_loop | vector_sort | vector_starved | index_filter
    node: str  # the node's label
    message: str
    suggestion: str | None = None  # SQL or a setting to try, when one can be derived

    def __str__(self) -> str:
        return f"{self.node}: {self.message}" + (f" -> {self.suggestion}" if self.suggestion else "")


@dataclass
class PlanAnalysis:
    sql: str
    plan: dict[str, Any]
    nodes: list[PlanNode]
    recommendations: list[Recommendation]
    planning_ms: float
    execution_ms: float

    @property
    def kinds(self) -> set[str]:
        return {r.kind for r in self.recommendations}

    def node(self, label_prefix: str) -> PlanNode:
        """The first node whose label starts with `label_prefix` (handy in notebooks and tests)."""
        return next(n for n in self.nodes if n.label.startswith(label_prefix))


def analyze_plan(
    conn: psycopg.Connection[Any],
    query: str | psql.Composable,
    params: Sequence[Any] | dict[str, Any] | None = None,
    *,
    thresholds: Thresholds | None = None,
) -> PlanAnalysis:
    """EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `query` with `params` and recommend, node by node."""
    text = query.as_string(conn) if isinstance(query, psql.Composable) else query
    statement = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + text.strip().rstrip(";")
    # binary=True forces the extended protocol, which refuses a second statement smuggled after a ';'.
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        try:
            row = cur.execute(statement.encode(), params or None, binary=True).fetchone()
        except psycopg.errors.SyntaxError as exc:
            raise InvalidInput(f"cannot analyze this statement: {exc.diag.message_primary}") from exc
    assert row is not None
    doc = row[0][0] if isinstance(row[0], list) else row[0]
    return analyze_json(text, doc, thresholds or Thresholds())


def analyze_json(sql: str, doc: dict[str, Any], th: Thresholds) -> PlanAnalysis:
    """Recommendations from an EXPLAIN JSON document (the element of its top-level list)."""
    nodes: list[PlanNode] = []
    _flatten(doc["Plan"], 0, nodes, None)
    recs: list[Recommendation] = []
    for n in nodes:
        recs += _check(n, nodes, th)
    return PlanAnalysis(
        sql=sql,
        plan=doc,
        nodes=nodes,
        recommendations=recs,
        planning_ms=float(doc.get("Planning Time", 0.0)),
        execution_ms=float(doc.get("Execution Time", 0.0)),
    )


def _flatten(plan: dict[str, Any], depth: int, out: list[PlanNode], parent: int | None) -> int:
    my_id = len(out) + 1
    out.append(None)  # type: ignore[arg-type]  # reserve the slot so ids follow plan order
    kids = tuple(_flatten(child, depth + 1, out, my_id) for child in plan.get("Plans", ()))
    raw = {k: v for k, v in plan.items() if k != "Plans"}
    out[my_id - 1] = PlanNode(
        id=my_id,
        depth=depth,
        node_type=plan["Node Type"],
        relation=plan.get("Relation Name"),
        index=plan.get("Index Name"),
        plan_rows=float(plan.get("Plan Rows", 0)),
        actual_rows=float(plan.get("Actual Rows", 0)),
        loops=int(plan.get("Actual Loops", 0)),
        raw=raw,
        children=kids,
        parent=parent,
    )
    return my_id


def _child(nodes: list[PlanNode], node: PlanNode, i: int) -> PlanNode | None:
    return nodes[node.children[i] - 1] if len(node.children) > i else None


def _scan_below(nodes: list[PlanNode], node: PlanNode) -> PlanNode | None:
    """The first node at or under `node` that reads a relation."""
    if node.relation:
        return node
    for cid in node.children:
        found = _scan_below(nodes, nodes[cid - 1])
        if found:
            return found
    return None


def _filter_columns(expr: str | None) -> list[str]:
    if not expr:
        return []
    cols = [c for c in _FILTER_COLUMN.findall(_LITERAL.sub("''", expr)) if c.lower() not in _NOT_COLUMNS]
    return list(dict.fromkeys(cols))


def _index_sql(relation: str, columns: list[str]) -> str | None:
    if not columns:
        return None
    return f"CREATE INDEX CONCURRENTLY ON {relation} ({', '.join(columns)})"


def _stops_early(nodes: list[PlanNode], n: PlanNode) -> bool:
    """Below a Limit (or a semi/anti join's inner side) a node is not run to completion, so fewer
    actual rows than planned says nothing about the estimate."""
    while n.parent is not None:
        up = nodes[n.parent - 1]
        if up.node_type == "Limit" or (
            up.raw.get("Join Type") in ("Semi", "Anti") and up.children[-1] == n.id
        ):
            return True
        n = up
    return False


def _descendants(nodes: list[PlanNode], node: PlanNode) -> list[PlanNode]:
    out, todo = [], list(node.children)
    while todo:
        child = nodes[todo.pop() - 1]
        out.append(child)
        todo.extend(child.children)
    return out


def _estimate_off(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> float | None:
    """actual/planned (per loop) when it is off by the factor on a non-trivial row count, else None."""
    if n.loops == 0 or max(n.actual_rows, n.plan_rows) < th.misestimate_min_rows:
        return None
    ratio = max(n.actual_rows, 1.0) / max(n.plan_rows, 1.0)
    if ratio < 1 and _stops_early(nodes, n):
        return None
    return ratio if ratio >= th.misestimate_factor or ratio <= 1 / th.misestimate_factor else None


def _rule_seq_scan(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """A sequential scan that reads many rows to keep few: an index on the filtered columns."""
    if n.node_type != "Seq Scan" or not n.loops:
        return None
    read = n.total_rows + n.removed_rows
    if read < th.large_rows or n.removed_rows < th.removed_fraction * read:
        return None
    filt = str(n.raw.get("Filter"))
    if _LEADING_WILDCARD.search(filt):
        advice = (
            "a LIKE pattern that starts with % cannot use a btree index; a pg_trgm GIN index or "
            "full-text search (tsvector + GIN) can"
        )
        suggestion = None
    else:
        advice = "an index on the filtered column(s) would read only the matches"
        suggestion = _index_sql(n.relation or "?", _filter_columns(filt))
    return Recommendation(
        "seq_scan",
        n.label,
        f"read {read:,.0f} rows to keep {n.total_rows:,.0f} (filter {filt}); {advice}",
        suggestion,
    )


def _rule_index_filter(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """An index scan whose filter throws most of what it found away: a composite index."""
    if n.node_type not in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan") or not n.loops:
        return None
    read = n.total_rows + n.removed_rows
    if read < th.large_rows or n.removed_rows < th.removed_fraction * read:
        return None
    raw = n.raw
    cols = _filter_columns(raw.get("Index Cond") or raw.get("Recheck Cond")) + _filter_columns(
        raw.get("Filter")
    )
    return Recommendation(
        "index_filter",
        n.label,
        f"the index found {read:,.0f} rows and the filter ({raw.get('Filter')}) dropped "
        f"{n.removed_rows:,.0f}; a composite index with the filtered columns would skip them",
        _index_sql(n.relation or "?", list(dict.fromkeys(cols))),
    )


def _is_sort(n: PlanNode) -> bool:
    return n.node_type in ("Sort", "Incremental Sort") and bool(n.loops)


def _sorted_rows(n: PlanNode, nodes: list[PlanNode]) -> float:
    child = _child(nodes, n, 0)
    return child.total_rows if child else n.total_rows


def _sorts_by_vector(n: PlanNode) -> bool:
    return any(_VECTOR_OPS.search(k) for k in n.raw.get("Sort Key", []))


def _rule_vector_sort(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """ORDER BY a vector distance done by a Sort: no vector index served it."""
    if not _is_sort(n) or not _sorts_by_vector(n):
        return None
    sorted_rows = _sorted_rows(n, nodes)
    if sorted_rows < th.vector_sort_rows:
        return None
    scan = _scan_below(nodes, n)
    return Recommendation(
        "vector_sort",
        n.label,
        f"ORDER BY a vector distance sorted {sorted_rows:,.0f} rows: no vector index served "
        "it. Check an HNSW index exists with the operator class of that operator, that the "
        "ORDER BY is `column <op> value` ascending with a LIMIT, and that the planner is not "
        "preferring a filter index (pgvector 0.8: hnsw.iterative_scan)",
        f"CREATE INDEX CONCURRENTLY ON {scan.relation if scan else '?'} USING hnsw (...)",
    )


def _rule_sort(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """A large (or spilled) Sort on plain columns: an index in that order."""
    if not _is_sort(n) or _sorts_by_vector(n):
        return None
    sorted_rows = _sorted_rows(n, nodes)
    if sorted_rows < th.large_rows and n.raw.get("Sort Space Type") != "Disk":
        return None
    keys = n.raw.get("Sort Key", [])
    scan = _scan_below(nodes, n)
    rel = (scan.relation if scan else None) or "?"
    cols = _filter_columns((scan.raw.get("Filter") or scan.raw.get("Index Cond")) if scan else None)
    order = [_sort_key_column(k) for k in keys]
    return Recommendation(
        "sort",
        n.label,
        f"sorted {sorted_rows:,.0f} rows by {', '.join(keys)} ({n.raw.get('Sort Method')}); an index "
        "in that order (after the equality-filtered columns) returns them already sorted",
        _index_sql(rel, list(dict.fromkeys(cols + [c for c in order if c]))),
    )


def _rule_sort_spill(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """A Sort that spilled to disk: more work_mem for this query."""
    if not _is_sort(n) or n.raw.get("Sort Space Type") != "Disk":
        return None
    return Recommendation(
        "sort_spill",
        n.label,
        f"the sort spilled {n.raw.get('Sort Space Used')} kB to disk",
        "raise work_mem for this query (SET LOCAL work_mem)",
    )


def _rule_vector_starved(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """A LIMIT over a vector index scan that came back short: filters after the scan starved it."""
    if n.node_type != "Limit" or n.loops != 1 or n.actual_rows >= n.plan_rows:
        return None
    vector_scan = next(
        (
            d
            for d in _descendants(nodes, n)
            if d.node_type in ("Index Scan", "Index Only Scan")
            and _VECTOR_OPS.search(str(d.raw.get("Order By")))
        ),
        None,
    )
    if vector_scan is None:
        return None
    return Recommendation(
        "vector_starved",
        n.label,
        f"asked for {n.plan_rows:,.0f} rows and returned {n.actual_rows:,.0f}: {vector_scan.label} "
        "yields only hnsw.ef_search candidates and filters applied after it (a join or a WHERE on "
        "another table) dropped most of them. Filter on columns of the indexed table and let pgvector "
        "0.8 keep scanning",
        "SET LOCAL hnsw.iterative_scan = relaxed_order",
    )


def _rule_hash_spill(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """A hash table split into batches (spilled): more work_mem for this query."""
    if n.node_type != "Hash" or int(n.raw.get("Hash Batches", 1)) <= 1:
        return None
    return Recommendation(
        "hash_spill",
        n.label,
        f"the hash table was split into {n.raw['Hash Batches']} batches (spilled to disk)",
        "raise work_mem for this query (SET LOCAL work_mem)",
    )


def _rule_misestimate(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """A row estimate off by the factor, reported where it starts (not on every parent above it)."""
    ratio = _estimate_off(n, nodes, th)
    if ratio is None or any(_estimate_off(nodes[c - 1], nodes, th) for c in n.children):
        return None
    direction = "under" if ratio > 1 else "over"
    factor = ratio if ratio > 1 else 1 / ratio
    target = n.relation or (s.relation if (s := _scan_below(nodes, n)) else None)
    cols = _filter_columns(n.raw.get("Filter") or n.raw.get("Index Cond") or n.raw.get("Hash Cond"))
    hint = f"ANALYZE {target}" if target else "ANALYZE the tables involved"
    if target and len(cols) > 1:
        hint += f"; correlated columns: CREATE STATISTICS ON {', '.join(cols)} FROM {target}"
    return Recommendation(
        "misestimate",
        n.label,
        f"planned {n.plan_rows:,.0f} rows, got {n.actual_rows:,.0f} per loop ({factor:,.0f}x {direction}"
        "estimated); plans above this node were chosen on a wrong count",
        hint,
    )


def _rule_nested_loop(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> Recommendation | None:
    """A nested loop over a large outer input whose inner side is not an index lookup."""
    if n.node_type != "Nested Loop" or not n.loops:
        return None
    outer, inner = _child(nodes, n, 0), _child(nodes, n, 1)
    if not outer or not inner or outer.total_rows < th.nested_loop_outer_rows:
        return None
    inner_scan = _scan_below(nodes, inner)
    if inner_scan is not None and inner_scan.node_type in ("Index Scan", "Index Only Scan"):
        return None
    suggestion = None
    if inner_scan and inner_scan.relation:
        cond = " ".join(str(x) for x in (n.raw.get("Join Filter"), inner_scan.raw.get("Filter")) if x)
        alias = inner_scan.raw.get("Alias", inner_scan.relation)
        cols = re.findall(rf"\b{re.escape(alias)}\.([a-z_][a-z0-9_]*)", cond)
        suggestion = _index_sql(inner_scan.relation, list(dict.fromkeys(cols)))
    return Recommendation(
        "nested_loop",
        n.label,
        f"ran its inner side ({inner.label}) {outer.total_rows:,.0f} times (once per outer row; "
        f"{outer.plan_rows:,.0f} were planned), going through {inner.total_rows:,.0f} inner rows "
        "in all; a hash join, or an index on the inner join key, makes that one pass or lookups",
        suggestion,
    )


Rule = Callable[[PlanNode, list[PlanNode], Thresholds], Recommendation | None]

# In the order their recommendations are listed for one node.
RULES: tuple[Rule, ...] = (
    _rule_seq_scan,
    _rule_index_filter,
    _rule_vector_sort,
    _rule_sort,
    _rule_sort_spill,
    _rule_vector_starved,
    _rule_hash_spill,
    _rule_misestimate,
    _rule_nested_loop,
)


def _check(n: PlanNode, nodes: list[PlanNode], th: Thresholds) -> list[Recommendation]:
    return [rec for rule in RULES if (rec := rule(n, nodes, th)) is not None]


def _sort_key_column(key: str) -> str | None:
    """`mf.uploaded_at DESC` -> `uploaded_at DESC`; expressions are not index columns we can name."""
    m = re.fullmatch(
        r"(?:[a-z_][a-z0-9_]*\.)?([a-z_][a-z0-9_]*)( DESC)?(?: NULLS (?:FIRST|LAST))?", key.strip(), re.I
    )
    return (m.group(1) + (m.group(2) or "")) if m else None
