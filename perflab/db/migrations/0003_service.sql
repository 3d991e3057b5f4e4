-- What the search service adds.
-- derivatives: the stored renditions of an upload (name, width, height, format, key, bytes) so a
-- result can carry CDN URLs and a srcset without touching storage.
-- Session revocations live here as well as in Redis: sessions are served from Redis, but while Redis
-- is down the service falls back to the signed session cookie, and a logout or revoke-all must still
-- hold then. revoked_sessions keeps single logouts until the session's absolute expiry;
-- users.sessions_valid_after rejects every session issued before a revoke-all.

ALTER TABLE media_files ADD COLUMN derivatives jsonb NOT NULL DEFAULT '[]';

ALTER TABLE users ADD COLUMN sessions_valid_after timestamptz;

CREATE TABLE revoked_sessions (
    session_hash bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    revoked_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX idx_revoked_sessions_expires ON revoked_sessions (expires_at);
