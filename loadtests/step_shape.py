"""A LoadTestShape stepping through concurrency levels: PERFLAB_LOAD_STEPS users (e.g. "1,8,32"), each
held for PERFLAB_LOAD_STEP_SECONDS. Use it beside the locustfile: `locust -f locustfile.py,step_shape.py`
(`perflab loadtest --steps 1,8,32` does this)."""

from __future__ import annotations

import os
from typing import ClassVar

from locust import LoadTestShape


class StepShape(LoadTestShape):
    steps: ClassVar[list[int]] = [
        int(x) for x in os.environ.get("PERFLAB_LOAD_STEPS", "1,8,32").split(",") if x.strip()
    ]
    step_seconds = float(os.environ.get("PERFLAB_LOAD_STEP_SECONDS", "20"))

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        index = int(elapsed // self.step_seconds)
        if index >= len(self.steps):
            return None
        users = self.steps[index]
        return users, float(max(users, 1))
