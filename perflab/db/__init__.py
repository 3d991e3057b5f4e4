"""PostgreSQL + pgvector: connections, schema, query optimizer, vector search, bulk load."""

from perflab.db.connect import configure, connect, conninfo_kwargs
from perflab.db.migrate import MigrationResult, drop_schema, migrate

__all__ = ["MigrationResult", "configure", "connect", "conninfo_kwargs", "drop_schema", "migrate"]
