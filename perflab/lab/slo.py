"""Service-level objectives: one declarative TOML file, checked against a run's figures.

    [[slo]]
    check = "search.warm_p95_ms < 2000"
    why = "the seed's 2-second search target"

A figure the run did not produce fails as "missing": a gate that silently passes on no data is no gate.

A figure measured in trials also carries `<figure>.ci95` and `<figure>.status` (see
perflab.lab.figures.record_estimate). A gate is "inconclusive", neither pass nor fail, when its figure
was measured while the machine was noisy (a timing figure from a noisy phase, or status "noisy"), when
it had too few samples (status "insufficient"), or when its 95 % CI straddles the threshold.
"""

from __future__ import annotations

import operator
import re
import tomllib
from collections.abc import Collection
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
    status: str  # "pass" | "fail" | "missing" | "inconclusive"
    why: str
    ci95: tuple[float, float] | None = None
    reason: str = ""  # why inconclusive

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


def load(path: Path | None = None) -> list[Objective]:
    """The objectives in `path`; by default the project's one place for gates, notebooks/slo.toml."""
    if path is None:
        from perflab.config import project_root

        path = project_root() / "notebooks" / "slo.toml"
    if not path.is_file():
        raise ConfigError(f"SLO file {path} does not exist")
    return parse(path.read_text(), str(path))


_TIMING_UNITS = ("_ms", "_s", "_us", "_seconds")
_TIMING_WORDS = ("rps", "qps", "throughput", "per_s")
_TIMING_RATIOS = (
    "speedup",
    "overhead",
    "_vs_raw",
    "throughput_ratio",
)  # one timing over another, one machine


def noise_sensitive(figure: str) -> bool:
    """Timing figures (latencies, durations, rates, speedups, overheads, ratios of two timings) move
    with a busy machine; counts, ratios of sizes, recall and versions do not."""
    return figure.endswith(_TIMING_UNITS) or any(w in figure for w in (*_TIMING_WORDS, *_TIMING_RATIOS))


def timing_ratio(figure: str) -> bool:
    """A ratio of two timings taken on the same machine: noise moves it, machine speed does not."""
    return any(w in figure for w in _TIMING_RATIOS)


def _ci(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(x, int | float) for x in value):
        return (float(value[0]), float(value[1]))
    return None


def threshold(figure: str, path: Path | None = None, *, profile: str | None = None) -> float:
    """The bound slo.toml sets on `figure` (the first objective on it; with `profile`, the first one
    written for that profile, else the first for every profile): how plots, load tests and benches
    draw or apply the target without writing the number a second time."""
    objectives = [o for o in load(path) if o.figure == figure]
    if profile is not None:
        objectives = [o for o in objectives if profile in o.profiles] + [
            o for o in objectives if not o.profiles
        ]
    if not objectives:
        raise ConfigError(
            f"slo.toml sets no objective on {figure!r}" + (f" for profile {profile!r}" if profile else "")
        )
    return objectives[0].threshold


def evaluate(
    objectives: list[Objective],
    figures: dict[str, Any],
    profile: str | None = None,
    *,
    partial: bool = False,
    noisy: Collection[str] = (),
) -> list[Verdict]:
    """Check each objective; with `partial` (a run of some notebooks only) a missing figure is skipped.
    `noisy` names the figures measured in a noisy phase (the report knows which notebook made which)."""
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
        ci = _ci(figures.get(obj.figure + ".ci95"))
        reason = ""
        if figures.get(obj.figure + ".status") == "insufficient":
            reason = "too few samples or trials"
        elif noise_sensitive(obj.figure) and (
            obj.figure in noisy or figures.get(obj.figure + ".status") == "noisy"
        ):
            reason = "measured while outsiders took more than the noise threshold"
        elif ci is not None and _OPS[obj.op](ci[0], obj.threshold) != _OPS[obj.op](ci[1], obj.threshold):
            reason = "the 95% CI straddles the threshold"
        status = "inconclusive" if reason else ("pass" if ok else "fail")
        verdicts.append(Verdict(obj.text, obj.figure, float(value), status, obj.why, ci, reason))
    return verdicts


def exit_code(verdicts: list[Verdict], notebooks_ok: bool = True) -> int:
    """0: every gate passed; 1: a gate failed or is missing, or a notebook failed; 3: nothing failed but
    some gate is inconclusive (2 is the command-line usage error)."""
    if not notebooks_ok or any(v.status in ("fail", "missing") for v in verdicts):
        return 1
    return 3 if any(v.status == "inconclusive" for v in verdicts) else 0


def as_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in verdicts]
