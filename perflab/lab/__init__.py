"""The lab around the system: reports, figures, SLO gates, provenance, latency measurement."""

from perflab.lab.figures import gather, record
from perflab.lab.provenance import collect as collect_provenance
from perflab.lab.report import RunResult, run_report, write_index
from perflab.lab.slo import Objective, Verdict, evaluate

__all__ = [
    "Objective",
    "RunResult",
    "Verdict",
    "collect_provenance",
    "evaluate",
    "gather",
    "record",
    "run_report",
    "write_index",
]
