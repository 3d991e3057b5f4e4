"""Typed errors of the database layer."""

from __future__ import annotations

from perflab.errors import PerflabError


class InvalidInput(PerflabError, ValueError):
    """An argument the database layer refuses before sending anything (bad id, vector, filter, k)."""


class DatabaseNotReady(PerflabError):
    """The database lacks something only its administrator can provide (an extension, a privilege).

    The message names what is missing, the database, and the exact SQL or step that provides it.
    """


class EmbedderMismatch(PerflabError):
    """The library's vectors come from another embedder than the one asked to search them: their
    distances would mean nothing. Re-seed the library with this embedder, or search with its own."""

    def __init__(self, query_model: str, library_models: list[str]) -> None:
        self.query_model = query_model
        self.library_models = library_models
        super().__init__(
            f"the library's vectors were made by {', '.join(library_models)}, not by {query_model}:"
            f" re-seed it with {query_model} (perflab db seed --embedder ...) or search with"
            f" {library_models[0]}"
        )
