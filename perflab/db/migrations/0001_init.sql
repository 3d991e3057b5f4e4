-- The tables and columns the seed's queries use (users, media_files, media_embeddings,
-- processing_jobs, search_history), with foreign keys and the seed's indexes.
-- {dim} is the embedding dimension from the settings (default 384).
-- media_embeddings carries user_id, media_type, status and uploaded_at copied from media_files so that
-- a per-user, filtered vector search reads one table (the HNSW index and its iterative scan work there).

CREATE TABLE users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firebase_uid      text UNIQUE,
    email             text UNIQUE,
    display_name      text,
    subscription_tier text NOT NULL DEFAULT 'free',
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_login_at     timestamptz
);

CREATE TABLE media_files (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    filename          text NOT NULL,
    original_filename text,
    mime_type         text NOT NULL DEFAULT 'image/jpeg',
    media_type        text NOT NULL DEFAULT 'image' CHECK (media_type IN ('image', 'video', 'audio', 'document')),
    file_size_bytes   bigint NOT NULL DEFAULT 0 CHECK (file_size_bytes >= 0),
    width             integer,
    height            integer,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    caption           text,
    tags              text[] NOT NULL DEFAULT '{}',
    storage_key       text,
    dominant_colors   jsonb,
    blurhash          text,
    uploaded_at       timestamptz NOT NULL DEFAULT now(),
    processed_at      timestamptz
);

CREATE TABLE media_embeddings (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    media_file_id    uuid NOT NULL REFERENCES media_files(id) ON DELETE CASCADE,
    user_id          uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    media_type       text NOT NULL DEFAULT 'image',
    status           text NOT NULL DEFAULT 'completed',
    uploaded_at      timestamptz NOT NULL DEFAULT now(),
    embedding        vector({dim}) NOT NULL,
    embedding_model  text NOT NULL,
    is_primary       boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE processing_jobs (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    media_file_id uuid NOT NULL REFERENCES media_files(id) ON DELETE CASCADE,
    job_type      text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);

CREATE TABLE search_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    query        text NOT NULL,
    filters      jsonb NOT NULL DEFAULT '{}',
    result_count integer NOT NULL DEFAULT 0,
    latency_ms   real,
    cache_hit    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Foreign-key lookups.
CREATE INDEX idx_media_embeddings_media_file ON media_embeddings (media_file_id);
CREATE INDEX idx_processing_jobs_media_file ON processing_jobs (media_file_id);
CREATE UNIQUE INDEX idx_media_embeddings_primary ON media_embeddings (media_file_id) WHERE is_primary;
-- The exact per-user path: btree on user_id, then order by distance over that user's rows.
CREATE INDEX idx_media_embeddings_user ON media_embeddings (user_id);

-- The seed's indexes (Step 5, createOptimalIndexes).
CREATE INDEX idx_users_activity ON users (last_login_at DESC, created_at DESC);
CREATE INDEX idx_media_files_user_status ON media_files (user_id, status, uploaded_at DESC);
CREATE INDEX idx_processing_jobs_status ON processing_jobs (status, created_at DESC)
    WHERE status IN ('pending', 'processing');
CREATE INDEX idx_search_history_user_created ON search_history (user_id, created_at DESC);
