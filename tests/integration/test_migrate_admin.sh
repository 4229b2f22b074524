#!/usr/bin/env bash
# test_migrate_admin.sh -- `dcbus migrate` as a front end to the storage
# admin operation, run by `dcbus-worker --admin` with no broker, against a
# throwaway PostgreSQL 15 (pg_env.sh):
#   - `dcbus migrate --instance` of a csv instance fails (exit 2) saying the
#     plugin has no admin operation; of a mock-storage instance (which has
#     one, without `migrate`) saying it has no such command;
#   - over the whole config it asks only the instances that have migrations
#     (the postgres ones), lists the pending ones, creates nothing, and
#     with --yes applies them;
#   - `dcbus-worker --admin status` gives the schema version before and after;
#   - an unreachable server is a failure (exit 1) with libpq's reason;
#   - a plain typed table that TimescaleDB could make a hypertable (a
#     stand-in for TimescaleDB: views that shadow the catalog) is listed
#     with the pending step typed/create_hypertable, which a worker does not
#     apply and --yes does (create_hypertable with migrate_data => true);
#     status says what the table is before and after;
#   - `dcbus plugins NAME` says which storage plugins have the operation;
#   - `dcbus` itself no longer links libpq (the plugin's code stays in the plugin).
# No broker runs at any point (the one worker started has none to join).
root=${DCBUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$root/tests/integration/pg_env.sh" || exit 1
. "$(dirname "$0")/lib.sh"
trap 'lib_cleanup; pg_env_cleanup' EXIT

DCBUS=$BIN/dcbus
CFG=$TMP/admin.yaml
sql() { "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
{
    config_head
    echo "workers:"
    echo "  ticks: {plugin: ticker, symbols: [BTC_USDT], limit: 10}"
    echo "  files: {plugin: csv, dir: $TMP/csv}"
    echo "  mock: {plugin: mock-storage, file: $TMP/mock.txt}"
    echo "  pg: {plugin: postgres, dsn: \"\${DATABASE_URL}\", table: events, migrate: manual}"
    echo "  gone: {plugin: postgres, dsn: \"postgresql://dcbus@127.0.0.1:1/dcbus?connect_timeout=5\", table: events}"
    echo "pipelines:"
    echo "  p: {from: ticks, to: [files, mock, pg]}"
} >"$CFG"

# run NAME COMMAND...: exit status in $rc, stdout in $out, stderr in $err.
run() {
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    rc=$?
    out=$(cat "$TMP/$name.out")
    err=$(cat "$TMP/$name.err")
    sed 's/^/    | /' "$TMP/$name.out" "$TMP/$name.err"
}

echo "--- instances without migrations"
run csv "$DCBUS" migrate "$CFG" --instance files
check "csv: exit $rc (2), 'plugin csv has no admin operation'" \
    test $rc -eq 2 -a "$err" = "dcbus-worker: files: plugin csv has no admin operation"
check "csv: nothing on stdout" test -z "$out"
run mock "$DCBUS" migrate "$CFG" --instance mock
check "mock-storage: exit $rc (2), 'has no admin command migrate'" \
    test $rc -eq 2 -a "$err" = "dcbus-worker: mock: plugin mock-storage has no admin command 'migrate'"
run ticker "$DCBUS" migrate "$CFG" --instance ticks
check "a collector: exit $rc (2), said so" \
    grep -q 'plugin ticker is a collector plugin: admin commands are storage operations' <<<"$err"
check "the mock's file was not created by its admin open()" test ! -e "$TMP/mock.txt"

echo "--- status and migrate of the postgres instance"
run status0 "$BIN/dcbus-worker" --config "$CFG" --instance pg --admin status
check "status before: exit $rc (0), no version yet, 2 pending" \
    test $rc -eq 0 -a "$(grep -c '^  public.events: schema version none (0 applied, 2 pending, 0 changed)$' <<<"$out")" -eq 1
run list "$DCBUS" migrate "$CFG" --instance pg
check "migrate --instance pg: exit $rc (0), 4 pending (sessions and events)" \
    test $rc -eq 0 -a "$(grep -c '^  pending ' <<<"$out")" -eq 4
check "it says: 4 pending; run with --yes to apply" grep -q '^  4 pending; run with --yes to apply$' <<<"$out"
check "listing created nothing" test "$(sql "SELECT to_regclass('events') IS NULL")" = t

run all "$DCBUS" migrate "$CFG"
check "migrate CONFIG: exit $rc (1: 'gone' is unreachable)" test $rc -eq 1
check "it asked pg and gone only: one listing, gone's libpq reason, nothing of the others" \
    test "$(grep -c '^pg: database dcbus on 127.0.0.1' <<<"$out")" -eq 1 -a \
    "$(grep -c 'instance=gone msg="connection to server at .*port 1 failed' <<<"$err")" -eq 1 -a \
    "$(grep -c 'files\|mock\|ticks' <<<"$out$err")" -eq 0

sed -i '/^  gone:/d' "$CFG"
run apply "$DCBUS" migrate "$CFG" --yes
check "migrate CONFIG --yes: exit $rc (0), 4 applied" \
    test $rc -eq 0 -a "$(grep -c '^  + .* applied to public\.' <<<"$out")" -eq 4 -a \
    "$(grep -c '^  4 applied$' <<<"$out")" -eq 1
check "events and the sessions table exist, 4 migrations recorded" \
    test "$(sql "SELECT to_regclass('events') IS NOT NULL AND to_regclass('data_collection_sessions') IS NOT NULL")" = t \
    -a "$(sql 'SELECT count(*) FROM schema_migrations')" -eq 4
run status1 "$BIN/dcbus-worker" --config "$CFG" --instance pg --admin status
check "status after: generic/002, 2 applied, nothing pending" \
    test $rc -eq 0 -a "$(grep -c '^  public.events: schema version generic/002 (2 applied, 0 pending, 0 changed)$' <<<"$out")" -eq 1
run again "$DCBUS" migrate "$CFG" --yes
check "a second --yes applies nothing (exit $rc)" \
    test $rc -eq 0 -a "$(grep -c '^  nothing pending$' <<<"$out")" -eq 1
echo "--- a sessions table made before sessions/002: dcbus migrate adds seed 004's columns"
sql "ALTER TABLE data_collection_sessions DROP COLUMN records_collected, DROP COLUMN symbols,
     DROP COLUMN data_types, DROP COLUMN prices_count, DROP COLUMN orderbook_count;
     DELETE FROM schema_migrations WHERE name = 'sessions/seed004_columns'" >/dev/null
run old "$DCBUS" migrate "$CFG" --instance pg
check "sessions/002_seed004_columns is pending (exit $rc)" \
    test $rc -eq 0 -a "$(grep -c '^  pending .*sessions/002_seed004_columns *public.data_collection_sessions$' <<<"$out")" -eq 1
run upgrade "$DCBUS" migrate "$CFG" --yes
check "--yes applies it (exit $rc): symbols, data_types, prices_count, orderbook_count, records_collected" \
    test $rc -eq 0 -a "$(sql "SELECT count(*) FROM information_schema.columns WHERE table_name = 'data_collection_sessions'
        AND column_name IN ('symbols', 'data_types', 'prices_count', 'orderbook_count', 'records_collected')")" -eq 5
run unknown "$BIN/dcbus-worker" --config "$CFG" --instance pg --admin vacuum
check "an unknown command: exit $rc (3), said so" \
    test $rc -eq 3 -a "$err" = "dcbus-worker: pg: plugin postgres has no admin command 'vacuum'"

echo "--- a plain table TimescaleDB could take: the hypertable step"
# TimescaleDB cannot be installed here: a stand-in.  In database tsdb a
# schema `fake`, first in the search path (before pg_catalog), shadows
# pg_extension and pg_available_extensions with views that list
# timescaledb; timescaledb_information.hypertables reads fake.hypertables,
# which create_hypertable(regclass, name, migrate_data) fills.  The typed
# table is made first, before the stand-in: a table made before TimescaleDB
# was installed.
"$PG_BIN/createdb" tsdb || die "createdb tsdb"
TSCFG=$TMP/ts.yaml
{
    config_head
    echo "workers:"
    echo "  ts: {plugin: postgres, dsn: \"postgresql://dcbus@127.0.0.1:$PGPORT/tsdb\", table: ticks,"
    echo "       mode: typed, time_column: ts, session_table: \"\","
    echo "       columns: {ts: {type: timestamptz}, price: {type: double}}}"
    echo "pipelines: {}"
} >"$TSCFG"
tsql() { "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -d tsdb -c "$1"; }
run ts0 "$DCBUS" migrate "$TSCFG" --yes
check "the typed table is made, plain (exit $rc)" \
    test $rc -eq 0 -a "$(tsql "SELECT to_regclass('ticks') IS NOT NULL")" = t
tsql "CREATE SCHEMA fake;
      CREATE VIEW fake.pg_extension AS SELECT 'timescaledb'::name AS extname;
      CREATE VIEW fake.pg_available_extensions AS SELECT 'timescaledb'::name AS name;
      CREATE TABLE fake.hypertables (hypertable_schema name, hypertable_name name, dim name,
                                     migrated bool);
      CREATE SCHEMA timescaledb_information;
      CREATE VIEW timescaledb_information.hypertables AS
          SELECT hypertable_schema, hypertable_name FROM fake.hypertables;
      CREATE FUNCTION create_hypertable(relation regclass, time_column_name name,
                                        migrate_data boolean DEFAULT false)
          RETURNS void LANGUAGE sql AS \$\$
          INSERT INTO fake.hypertables SELECT n.nspname, c.relname, time_column_name, migrate_data
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation \$\$;
      ALTER DATABASE tsdb SET search_path = fake, pg_catalog, public" >/dev/null ||
    die "the stand-in is made"

run ts1 "$DCBUS" migrate "$TSCFG"
check "dcbus migrate lists typed/create_hypertable as pending (exit $rc)" \
    test $rc -eq 0 -a "$(grep -c '^  pending  -  *typed/create_hypertable  *public.ticks$' <<<"$out")" -eq 1
check "it says: 1 pending; run with --yes to apply" grep -q '^  1 pending; run with --yes to apply$' <<<"$out"
run tsstatus "$BIN/dcbus-worker" --config "$TSCFG" --instance ts --admin status
check "status says it is a plain table, and what makes it a hypertable" \
    grep -qF '  public.ticks is a plain table: timescaledb is installed; `dcbus migrate CONFIG --yes` makes it a hypertable on ts' <<<"$out"
start tsworker "$BIN/dcbus-worker" --config "$TSCFG" --instance ts
wait_for "$TMP/tsworker.log" 'public.ticks is a plain table: timescaledb is installed' 20
check "a worker (migrate: auto) says so at start" test $? -eq 0
stop tsworker
check "and applies no step: the table is still plain" \
    test "$(tsql 'SELECT count(*) FROM fake.hypertables')" -eq 0
run ts2 "$DCBUS" migrate "$TSCFG" --yes
check "--yes applies it (exit $rc)" \
    test $rc -eq 0 -a "$(grep -c '^  + typed/create_hypertable applied to public.ticks$' <<<"$out")" -eq 1
got=$(tsql "SELECT string_agg(hypertable_schema || '.' || hypertable_name || ' ' || dim || ' ' || migrated, ',')
            FROM fake.hypertables")
check "create_hypertable('public.ticks', 'ts', migrate_data => true) was called once ($got)" \
    test "$got" = "public.ticks ts true"
run ts3 "$DCBUS" migrate "$TSCFG"
check "then nothing is pending (exit $rc)" test $rc -eq 0 -a "$(grep -c '^  nothing pending$' <<<"$out")" -eq 1
run tsstatus2 "$BIN/dcbus-worker" --config "$TSCFG" --instance ts --admin status
check "and status says it is a hypertable on ts" grep -q '^  public.ticks is a hypertable on ts$' <<<"$out"

check "dcbus plugins tells which storage plugins have the admin operation" \
    test "$("$DCBUS" plugins postgres --config "$CFG" | grep '^admin: ')" = "admin: yes (dcbus-worker --admin COMMAND)" \
    -a "$("$DCBUS" plugins csv --config "$CFG" | grep '^admin: ')" = "admin: no"
check "no broker ran: no bus socket in $TMP" test ! -e "$TMP/bus"
check "dcbus does not link libpq" test "$(ldd "$DCBUS" | grep -c libpq)" -eq 0
finish
