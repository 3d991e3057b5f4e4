"""The floors of docs/architecture.md, checked against the imports: a module may import only its own
package and the floors its table row names. A new arrow is a decision: change the doc and this table."""

from __future__ import annotations

import ast
from pathlib import Path

import perflab

ROOT = Path(perflab.__file__).resolve().parent

CORE = {"errors", "config", "timing", "arrays", "net", "extras"}
# package (or top-level module) -> what it may import besides itself. Keep in step with the doc.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "timing": set(),
    "arrays": {"errors"},
    "net": set(),
    "extras": {"errors"},
    "servers": CORE,
    "cache": CORE,
    "embed": CORE,
    "images": CORE,
    "cdn": CORE | {"images"},
    "db": CORE | {"servers", "embed"},
    "service": CORE | {"servers", "cache", "embed", "images", "cdn", "db"},
    "lab": CORE | {"servers", "cache", "embed", "images", "cdn", "db", "service"},
    "bench": CORE | {"servers", "cache", "embed", "images", "cdn", "db", "service", "lab"},
    "cli": CORE | {"servers", "cache", "embed", "images", "cdn", "db", "service", "lab", "bench"},
    "__init__": {"config", "errors"},
}


def _floor(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The perflab packages a module imports, at module level or inside functions (lazy imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "perflab" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_module_sits_on_a_known_floor() -> None:
    floors = {_floor(p) for p in ROOT.rglob("*.py")}
    assert floors <= set(ALLOWED), f"add these to docs/architecture.md and ALLOWED: {floors - set(ALLOWED)}"


def test_imports_follow_the_floors() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        floor = _floor(path)
        for target in _imports(path) - {floor} - ALLOWED.get(floor, set()):
            wrong.append(f"{path.relative_to(ROOT)} imports perflab.{target}")
    assert not wrong, "imports against the floors of docs/architecture.md:\n" + "\n".join(wrong)


def test_no_relative_imports_hide_an_arrow() -> None:
    rel = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(ast.parse(p.read_text())))
    ]
    assert not rel, f"relative imports (use absolute perflab.* imports): {rel}"


def test_the_doc_names_every_floor() -> None:
    doc = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [f for f in ALLOWED if f != "__init__" and f"`{f}`" not in doc]
    assert not missing, f"docs/architecture.md does not name: {missing}"
