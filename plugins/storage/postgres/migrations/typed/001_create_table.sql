-- A typed table, one column per mapped field (the column list is generated
-- from the instance's `columns:` setting).  The unique key is (stream, seq, idx),
-- plus the time column when there is one: TimescaleDB wants the partitioning
-- column in every unique key, and a redelivered record carries the same time.
CREATE TABLE {{table}} (
    {{columns}},
    stream text NOT NULL,
    seq bigint NOT NULL,
    idx integer NOT NULL,
    UNIQUE ({{unique_key}})
);
