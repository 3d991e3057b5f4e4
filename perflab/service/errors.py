"""Typed errors of the search service: a request the API refuses (422) before anything is read or
written. The HTTP status of every error the service can meet is in `perflab.service.app.ERROR_STATUS`."""

from __future__ import annotations

from perflab.errors import PerflabError


class ServiceError(PerflabError):
    """Base of the errors the service raises on purpose."""


class InvalidSearch(ServiceError, ValueError):
    """A malformed search request (the API answers 422 with this message)."""


class InvalidUpload(ServiceError, ValueError):
    """Upload metadata the API refuses (422)."""
