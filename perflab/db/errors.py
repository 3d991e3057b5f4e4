"""Typed errors of the database layer."""

from __future__ import annotations

from perflab.errors import PerflabError


class InvalidInput(PerflabError, ValueError):
    """An argument the database layer refuses before sending anything (bad id, vector, filter, k)."""


class DatabaseNotReady(PerflabError):
    """The database lacks something only its administrator can provide (an extension, a privilege).

    The message names what is missing, the database, and the exact SQL or step that provides it.
    """
