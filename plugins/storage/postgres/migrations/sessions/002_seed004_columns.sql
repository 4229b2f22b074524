-- Seed 004's data_collection_sessions columns: which symbols and which data
-- types the session stored, and its counts by kind.  Each committed batch
-- group adds what it really inserted, in its own transaction, so the counts
-- stay exact through redeliveries.  records_collected is the seed's name for
-- records_count (the rows stored in the session), kept by the server.
ALTER TABLE {{table}}
    ADD COLUMN symbols text[] NOT NULL DEFAULT '{}',
    ADD COLUMN data_types text[] NOT NULL DEFAULT '{}',
    ADD COLUMN prices_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN orderbook_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN records_collected bigint GENERATED ALWAYS AS (records_count) STORED;
