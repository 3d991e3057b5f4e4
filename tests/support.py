"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import httpx

from perflab.lab.harness import ServiceProcess, sign_in


def client(service: ServiceProcess, email: str | None = None) -> httpx.Client:
    """A client of the test service, signed in as the seeded user `email` unless None."""
    if email is None:
        return httpx.Client(base_url=service.url, timeout=30)
    return sign_in(service.url, email, timeout=30)
