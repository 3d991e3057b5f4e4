"""Schemathesis against the running service's own OpenAPI schema: data that fits the schema and data
that does not (both generation modes), on every operation, signed in so the authenticated routes run
their code rather than stopping at the 401. No input may produce a 5xx.

Bounded and deterministic: 30 examples per operation and mode, derandomized. The schema is loaded from
the live service (a fixture), and each operation is a test of its own, so a failure names it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from perflab.lab.harness import ServiceProcess
from perflab.service.auth import COOKIE_NAME

OPERATIONS = [
    ("POST", "/sessions"),
    ("DELETE", "/sessions"),
    ("GET", "/search"),
    ("POST", "/media"),
    ("GET", "/media/{media_id}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
]
NO_INPUT = {("DELETE", "/sessions"), ("GET", "/metrics")}  # nothing to make invalid


@pytest.fixture(scope="module")
def api_schema(service: ServiceProcess) -> Any:
    return schemathesis.openapi.from_url(service.url + "/openapi.json")


@pytest.fixture(scope="module")
def session_cookie(service: ServiceProcess) -> dict[str, str]:
    r = httpx.post(service.url + "/sessions", json={"email": "user3@example.com"})
    assert r.status_code == 201
    return {COOKIE_NAME: r.cookies[COOKIE_NAME]}


def test_every_operation_of_the_schema_is_fuzzed(api_schema: Any) -> None:
    found = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_input_makes_a_server_error(
    api_schema: Any,
    session_cookie: dict[str, str],
    service: ServiceProcess,
    method: str,
    path: str,
    mode: Any,
) -> None:
    if mode == GenerationMode.NEGATIVE and (method, path) in NO_INPUT:
        pytest.skip("the operation takes no input, so there is no invalid input to send")
    operation = api_schema[path][method]
    # Sign-in and sign-out end the session they are sent with: they get no cookie, so the shared one
    # stays valid for the other operations.
    cookies = {} if path == "/sessions" else session_cookie

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(
            base_url=service.url, cookies=cookies, checks=[not_a_server_error], timeout=30
        )
        statuses.append(response.status_code)

    statuses: list[int] = []
    fuzz()
    assert statuses and max(statuses) < 500
