"""PostgreSQL + pgvector: connections, schema, query optimizer, vector search, bulk load, seeding."""

from perflab.db._validate import MEDIA_TYPES
from perflab.db.bulk import BulkLoadResult, JobRow, MediaRow, UserRow, bulk_load
from perflab.db.connect import configure, connect, conninfo_kwargs
from perflab.db.errors import EmbedderMismatch, InvalidInput
from perflab.db.explain import PlanAnalysis, PlanNode, Recommendation, Thresholds, analyze_plan
from perflab.db.indexes import SEED_INDEXES, IndexReport, IndexSpec, create_indexes, index_report
from perflab.db.media import NewMedia, insert_media
from perflab.db.migrate import MigrationResult, drop_schema, migrate
from perflab.db.pool import autocommit, borrow, make_pool
from perflab.db.queries import MediaRecord, QueryOptimizer, UserStats
from perflab.db.seed import (
    Library,
    SeedConflict,
    SeedResult,
    forget_uploads,
    generate_library,
    seed_library,
    seeded_email,
)
from perflab.db.vector import Hit, SearchFilters, VectorSearch, check_embedder, library_embedders
from perflab.db.vocabulary import QueryVocabulary, ZipfQuerySampler

__all__ = [
    "MEDIA_TYPES",
    "SEED_INDEXES",
    "BulkLoadResult",
    "EmbedderMismatch",
    "Hit",
    "IndexReport",
    "IndexSpec",
    "InvalidInput",
    "JobRow",
    "Library",
    "MediaRecord",
    "MediaRow",
    "MigrationResult",
    "NewMedia",
    "PlanAnalysis",
    "PlanNode",
    "QueryOptimizer",
    "QueryVocabulary",
    "Recommendation",
    "SearchFilters",
    "SeedConflict",
    "SeedResult",
    "Thresholds",
    "UserRow",
    "UserStats",
    "VectorSearch",
    "ZipfQuerySampler",
    "analyze_plan",
    "autocommit",
    "borrow",
    "bulk_load",
    "check_embedder",
    "configure",
    "connect",
    "conninfo_kwargs",
    "create_indexes",
    "drop_schema",
    "forget_uploads",
    "generate_library",
    "index_report",
    "insert_media",
    "library_embedders",
    "make_pool",
    "migrate",
    "seed_library",
    "seeded_email",
]
