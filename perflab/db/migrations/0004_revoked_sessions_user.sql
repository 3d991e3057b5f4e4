-- revoked_sessions.user_id references users with ON DELETE CASCADE: without an index, deleting a user
-- scans the table (flagged by `perflab db indexes`).
CREATE INDEX idx_revoked_sessions_user ON revoked_sessions (user_id);
