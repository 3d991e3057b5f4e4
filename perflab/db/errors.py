"""Typed errors of the database layer."""

from __future__ import annotations

from perflab.errors import PerflabError


class InvalidInput(PerflabError, ValueError):
    """An argument the database layer refuses before sending anything (bad id, vector, filter, k)."""
