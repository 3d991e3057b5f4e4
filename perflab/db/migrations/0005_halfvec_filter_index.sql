-- The HNSW index becomes a halfvec expression index, and the per-user btree a covering filter index.
--
-- halfvec: the graph stores 16-bit floats, half the memory and I/O of `vector` (100k x 384: see
-- `perflab bench vector`, which measures both). The column stays `vector`, so the search re-ranks the
-- index's candidates by their exact float32 distance (perflab/db/vector.py) and `vector` remains an
-- option: CREATE INDEX ... USING hnsw (embedding vector_cosine_ops) and VectorSearch(index="vector").
-- halfvec HNSW takes up to 4000 dimensions; above that the schema has no vector index (exact only).
--
-- idx_media_embeddings_filter replaces idx_media_embeddings_user: the search counts what the whole
-- filter (user, media type, dates, status) keeps, up to the exact-path threshold, before it picks the
-- exact or the HNSW path. With the filter columns in the index that count is an index-only range scan
-- (PostgreSQL 18 skips over media_type when only dates are given), and the exact path reads the same
-- index to find its rows.

DROP INDEX IF EXISTS idx_media_embeddings_hnsw;

DO $$
BEGIN
    IF {dim} <= 4000 THEN
        CREATE INDEX idx_media_embeddings_hnsw ON media_embeddings
            USING hnsw ((embedding::halfvec({dim})) halfvec_cosine_ops) WITH (m = 16, ef_construction = 128);
    END IF;
END
$$;

DROP INDEX IF EXISTS idx_media_embeddings_user;
CREATE INDEX idx_media_embeddings_filter ON media_embeddings (user_id, media_type, uploaded_at)
    INCLUDE (status) WHERE is_primary;
