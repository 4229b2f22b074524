-- Time-range reads and retention deletes go by created_at.
CREATE INDEX ON {{table}} (created_at);
