-- Which embedder made a library's vectors, answered from an index instead of a scan of every vector:
-- perflab.db.library_embedders walks the distinct embedding_model values (a few index probes each), so
-- the service can refuse to search vectors of one model with a query embedded by another
-- (EmbedderMismatch) at any library size. Deduplicated btree entries: a few MB at 1M rows.
CREATE INDEX IF NOT EXISTS idx_media_embeddings_model ON media_embeddings (embedding_model);
