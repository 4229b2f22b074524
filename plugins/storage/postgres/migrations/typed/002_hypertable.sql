-- With the TimescaleDB extension available on the server, the table becomes
-- a hypertable on its time column; without it (or without a time column)
-- it stays a plain table.  The check runs on the server, so this text is the
-- same either way and its checksum does not depend on the extension.
DO $migration$
BEGIN
    IF {{has_time_column}} AND EXISTS (SELECT 1 FROM pg_available_extensions
                                        WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable({{table_literal}}, {{time_column_literal}});
    END IF;
END
$migration$;
