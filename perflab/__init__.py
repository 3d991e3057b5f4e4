"""perflab: a lab for the caching and performance layer of an AI media search service.

Subpackages, one concern each: `servers` (embedded or staging servers), `cache` (Redis caches),
`db` (PostgreSQL + pgvector), `embed` (text embedders), `images` (Pillow pipeline), `cdn` (media
delivery), `service` (the search HTTP service), `lab` (reports, SLOs, latency measurement),
`bench` (the `perflab bench` figures). Importing perflab does no I/O.
"""

from perflab.config import Settings
from perflab.errors import ConfigError, PerflabError, ServiceUnavailable

__version__ = "0.1.0"
__all__ = ["ConfigError", "PerflabError", "ServiceUnavailable", "Settings", "__version__"]
