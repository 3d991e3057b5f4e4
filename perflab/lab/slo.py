"""Service-level objectives: one declarative TOML file, checked against a run's figures.

    [[slo]]
    check = "search.warm_p95_ms < 2000"
    why = "the seed's 2-second search target"

A figure the run did not produce fails as "missing": a gate that silently passes on no data is no gate.
"""

from __future__ import annotations

import operator
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from perflab.errors import ConfigError

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
_CHECK = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|==|<|>)\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*$")


@dataclass(frozen=True)
class Objective:
    figure: str
    op: str
    threshold: float
    why: str = ""
    profiles: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.figure} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Verdict:
    check: str
    figure: str
    value: float | None
    status: str  # "pass" | "fail" | "missing"
    why: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def parse(text: str, source: str = "slo.toml") -> list[Objective]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc
    out = []
    for i, item in enumerate(data.get("slo", [])):
        m = _CHECK.match(str(item.get("check", "")))
        if not m:
            raise ConfigError(f"{source}: slo #{i + 1} check {item.get('check')!r} is not 'figure OP number'")
        out.append(
            Objective(m[1], m[2], float(m[3]), str(item.get("why", "")), tuple(item.get("profiles", ())))
        )
    return out


def load(path: Path) -> list[Objective]:
    if not path.is_file():
        raise ConfigError(f"SLO file {path} does not exist")
    return parse(path.read_text(), str(path))


def evaluate(
    objectives: list[Objective], figures: dict[str, Any], profile: str | None = None, *, partial: bool = False
) -> list[Verdict]:
    """Check each objective; with `partial` (a run of some notebooks only) a missing figure is skipped."""
    verdicts = []
    for obj in objectives:
        if profile and obj.profiles and profile not in obj.profiles:
            continue
        value = figures.get(obj.figure)
        if isinstance(value, bool) or not isinstance(value, int | float):
            if partial:
                continue
            verdicts.append(Verdict(obj.text, obj.figure, None, "missing", obj.why))
            continue
        ok = _OPS[obj.op](float(value), obj.threshold)
        verdicts.append(Verdict(obj.text, obj.figure, float(value), "pass" if ok else "fail", obj.why))
    return verdicts


def as_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in verdicts]
