"""The search service: its HTTP API (`create_app`), what one process holds (`ServiceContext`), the
search and upload paths, session authentication, and `perflab serve`.

The lab runs it as a child process through `perflab.lab.harness`; nothing here is for tests only.
The names load on first use, not with the package: `perflab serve` must set PROMETHEUS_MULTIPROC_DIR
before prometheus_client is imported, and importing `perflab.service.auth` need not build the API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perflab.service.app import ERROR_STATUS, create_app, create_app_from_env
    from perflab.service.auth import COOKIE_NAME, Principal, SessionAuth
    from perflab.service.context import ServiceContext
    from perflab.service.embedding import CachedEmbedder
    from perflab.service.errors import InvalidSearch, InvalidUpload, ServiceError
    from perflab.service.history import SearchHistoryWriter
    from perflab.service.search import SearchOutcome, SearchRequest, SearchService
    from perflab.service.server import serve
    from perflab.service.upload import UploadResult, UploadService

_EXPORTS = {
    "ERROR_STATUS": "perflab.service.app",
    "create_app": "perflab.service.app",
    "create_app_from_env": "perflab.service.app",
    "COOKIE_NAME": "perflab.service.auth",
    "Principal": "perflab.service.auth",
    "SessionAuth": "perflab.service.auth",
    "ServiceContext": "perflab.service.context",
    "CachedEmbedder": "perflab.service.embedding",
    "InvalidSearch": "perflab.service.errors",
    "InvalidUpload": "perflab.service.errors",
    "ServiceError": "perflab.service.errors",
    "SearchHistoryWriter": "perflab.service.history",
    "SearchOutcome": "perflab.service.search",
    "SearchRequest": "perflab.service.search",
    "SearchService": "perflab.service.search",
    "serve": "perflab.service.server",
    "UploadResult": "perflab.service.upload",
    "UploadService": "perflab.service.upload",
}

__all__ = [
    "COOKIE_NAME",
    "ERROR_STATUS",
    "CachedEmbedder",
    "InvalidSearch",
    "InvalidUpload",
    "Principal",
    "SearchHistoryWriter",
    "SearchOutcome",
    "SearchRequest",
    "SearchService",
    "ServiceContext",
    "ServiceError",
    "SessionAuth",
    "UploadResult",
    "UploadService",
    "create_app",
    "create_app_from_env",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'perflab.service' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
