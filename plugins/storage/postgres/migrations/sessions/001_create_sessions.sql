-- The sessions table (one row per data-collection session, shared by every
-- postgres instance that names it).  Rows are upserted by session_begin,
-- session_end and by each committed batch group (records_count).
CREATE TABLE {{table}} (
    session_id text PRIMARY KEY,
    type text NOT NULL DEFAULT 'unknown',
    status text NOT NULL DEFAULT 'active',
    start_time timestamptz,
    end_time timestamptz,
    duration_seconds double precision,
    records_count bigint NOT NULL DEFAULT 0,
    errors_count bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {{table}} (start_time);
