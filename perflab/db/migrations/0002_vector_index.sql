-- The HNSW index for per-user vector search, and a trigger that keeps media_embeddings' copies of
-- media_files columns (user_id, media_type, status, uploaded_at) in step when media_files changes.
--
-- Cosine distance (<=>): the embedders return unit vectors, so this ranks like inner product, and a
-- writer that forgets to normalize still gets a correct ranking. HNSW needs <= 2000 dimensions for
-- `vector`; above that the schema has no vector index and every search is exact.
-- ef_construction = 128, not pgvector's 64: on 100k x 384 clustered vectors it lifts recall@10 at
-- ef_search 100 from 0.95 to 0.995 for a build of ~26 s instead of ~17 s (perflab bench vector).
-- Bulk loads (perflab/db/bulk.py) drop this index before a large COPY and rebuild it afterwards with
-- a large maintenance_work_mem, since building once is far faster than inserting row by row into it.

DO $$
BEGIN
    IF {dim} <= 2000 THEN
        CREATE INDEX idx_media_embeddings_hnsw ON media_embeddings
            USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128);
    END IF;
END
$$;

CREATE FUNCTION sync_media_embedding_columns() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE media_embeddings
       SET user_id = NEW.user_id, media_type = NEW.media_type,
           status = NEW.status, uploaded_at = NEW.uploaded_at
     WHERE media_file_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER media_files_sync_embeddings
    AFTER UPDATE OF user_id, media_type, status, uploaded_at ON media_files
    FOR EACH ROW
    WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.media_type IS DISTINCT FROM NEW.media_type
          OR OLD.status IS DISTINCT FROM NEW.status OR OLD.uploaded_at IS DISTINCT FROM NEW.uploaded_at)
    EXECUTE FUNCTION sync_media_embedding_columns();
