-- The generic table: each record as one JSONB document.  (stream, seq, idx)
-- names a record everywhere -- batch stream, batch sequence number, position
-- in the batch -- and its unique constraint makes redelivery harmless.
CREATE TABLE {{table}} (
    id bigserial PRIMARY KEY,
    location_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    stream text NOT NULL,
    seq bigint NOT NULL,
    idx integer NOT NULL,
    UNIQUE (stream, seq, idx)
);
