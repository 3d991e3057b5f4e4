"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import httpx

from perflab.lab.harness import ServiceProcess
from perflab.lab.harness import client as harness_client


def client(service: ServiceProcess, email: str | None = None) -> httpx.Client:
    """A client of the test service, signed in as the seeded user `email` unless None."""
    return harness_client(service.url, email)
