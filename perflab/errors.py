"""Typed errors. Every failure a user can cause or meet has its own class and a one-line message."""

from __future__ import annotations


class PerflabError(Exception):
    """Base of every error perflab raises on purpose; the CLI prints these as one line."""


class ConfigError(PerflabError):
    """A setting is missing, malformed or contradictory."""


class ServiceUnavailable(PerflabError):
    """A server (Redis, PostgreSQL) could not be reached or started.

    The message names the URL (password redacted) and what to do about it.
    """

    def __init__(self, service: str, url: str, reason: str, hint: str) -> None:
        self.service = service
        self.url = url
        self.reason = reason
        self.hint = hint
        super().__init__(f"{service} at {url} is unreachable ({reason}); {hint}")
