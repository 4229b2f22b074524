#!/usr/bin/env bash
# test_pg_bus.sh -- the postgres sink through the real bus, and the command
# line around it, against a throwaway PostgreSQL 15 (pg_env.sh, every
# statement logged) with the broker and one worker process per instance:
#   (a) 1,000,000 ticks, ticker -> postgres (typed tick_prices), counted in
#       SQL: rows, the sum of n, distinct n per symbol;
#   (d) `dcbus migrate CONFIG` lists every migration as applied (the workers
#       applied them at start) and --yes then applies nothing; on a config
#       with `migrate: manual` it lists pending ones, changes nothing without
#       --yes, and applies them with it;
#   (e) `dcbus query` returns exactly the rows psql returns for the same
#       filter, sort, limit and offset; refuses field names with a quote or a
#       semicolon (exit 1, never sent to the server: the statement log has
#       none of them, the table is still there); --delete removes exactly one
#       row; --csv quotes as RFC 4180 says;
#   (b) PostgreSQL stopped for 10 s in the middle of a rate-limited run: at
#       the end every record is there once (count and sum of n in SQL);
#   (c) the same with `to: [csv, pg]`: the CSV has every record exactly once,
#       PostgreSQL catches up after the restart; with pg critical, the
#       default, the pipeline waits for it: the CSV takes at most the
#       batches already in flight (the broker's memory_batches window) and
#       then stands still until the server is back;
#   (c') the same with pg `critical: false`: its batches wait in the
#       broker's backlog on disk, the CSV goes on during the outage, and
#       PostgreSQL catches up afterwards, exactly once.
# A collector ends once the broker has spooled its batches, so after each
# collector's exit the test first waits for the broker to deliver them
# (batches_in_flight 0, wait_delivered) before it counts what was stored.
root=${DCBUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PG_ENV_OPTS="-c log_statement=all" . "$root/tests/integration/pg_env.sh" || exit 1
. "$(dirname "$0")/lib.sh"
trap 'lib_cleanup; pg_env_cleanup' EXIT

TICKS=1000000
OUTAGE_S=10
RATE=100000          # ticks/s in (b) and (c): a 10 s run, the outage in its middle
STOP_AFTER=300000    # rows in the table when the server is stopped
SUM_N=$((TICKS * (TICKS - 1) / 2))
DCBUS=$BIN/dcbus
CFG=$TMP/bus.yaml

sql() { "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
rows_in() { sql "SELECT count(*) FROM $1"; }

# typed_pg NAME TABLE: a postgres instance writing the ticker's prices into
# a typed table.  A short reconnect back-off keeps the test short after the
# outage; the default (30 s) would only make it wait longer.
typed_pg() {
    cat <<YAML
  $1:
    plugin: postgres
    dsn: "\${DATABASE_URL}"
    table: $2
    mode: typed
    time_column: ts
    reconnect_max_ms: 1000
    columns:
      session_id: {type: text, field: \$session}
      symbol: {type: text}
      ts: {type: timestamptz}
      n: {type: bigint}
      price: {type: double}
      volume: {type: double}
      quote_volume: {type: double}
YAML
}

# ticker NAME PREFIX [SETTINGS]: the prices of two symbols, no order books.
ticker() {
    echo "  $1: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $TICKS, orderbook: false," \
        "seed: 7, start_ts: 1700000000000000, stream_prefix: $2${3:+, $3}}"
}

# A "retry later" (a lost connection) is retried for as long as the outage
# lasts, with the default settings: the test checks that no batch was given
# up.  Heartbeats at the default second: a worker sends them between plugin
# calls, and a query over a million rows or a big COPY can take longer than
# the 600 ms time-out of the other tests' 200 ms on a busy two-core machine.
{
    printf 'broker: {bus: %s, topics: %s, spool: %s, heartbeat_ms: 1000}\n' \
        "$BUS" "$TOPICS" "$TMP/spool"
    printf 'plugins_path: [%s]\n' "$BUILD/plugins"
    echo "workers:"
    ticker ticker_a a_
    typed_pg pg tick_prices
    ticker ticker_b b_ "rate: $RATE"
    typed_pg pg_b tick_outage
    ticker ticker_c c_ "rate: $RATE"
    echo "  csv_c: {plugin: csv, dir: $TMP/csv_c}" # one csv instance per dir (its checkpoint)
    typed_pg pg_c tick_dual
    ticker ticker_d d_ "rate: $RATE"
    echo "  csv_d: {plugin: csv, dir: $TMP/csv_d}"
    typed_pg pg_d tick_lagging
    echo "    critical: false"
    echo "  mock: {plugin: mock-source, records: 10, batch: 10}"
    echo "  docs: {plugin: postgres, dsn: \"\${DATABASE_URL}\", table: docs}"
    cat <<YAML
pipelines:
  a: {from: ticker_a, to: [pg]}
  b: {from: ticker_b, to: [pg_b]}
  c: {from: ticker_c, to: [csv_c, pg_c]}
  d: {from: ticker_d, to: [csv_d, pg_d]}
  m: {from: mock, to: [docs]}
YAML
} >"$CFG"

t_test=$(now)
broker "$CFG"
SINKS="pg pg_b pg_c csv_c pg_d csv_d docs"
for sink in $SINKS; do worker $sink "$CFG"; done
for sink in $SINKS; do
    wait_joined $sink || die "$sink joins the broker (its migrations applied)"
done

# ---------------------------------------------------------------------------
echo "--- (a) $TICKS ticks into tick_prices"
t0=$(now)
worker ticker_a "$CFG"
wait_exit ticker_a 120 || die "ticker_a finishes within 120 s"
check "ticker_a ends by itself with exit 0 after $(seconds_since "$t0") s" \
    test "${STATUS[ticker_a]}" -eq 0
check_delivered 120 "the broker delivers every batch of ticker_a to pg"
# The worker says once what the table is, as the catalog has it: a
# hypertable only where TimescaleDB is installed and lists the table.
kind="a plain table"
if [[ $(sql "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") -eq 1 &&
    $(sql "SELECT count(*) FROM timescaledb_information.hypertables
           WHERE hypertable_schema = 'public' AND hypertable_name = 'tick_prices'") -eq 1 ]]; then
    kind="a hypertable on ts"
fi
n=$(grep -c "public.tick_prices is $kind" "$TMP/pg.log" || true)
check "the catalog says tick_prices is $kind, and one line of pg's log says so" test "$n" -eq 1
n=$(rows_in tick_prices)
check "tick_prices has $n rows ($TICKS wanted)" test "$n" -eq $TICKS
n=$(sql 'SELECT sum(n) FROM tick_prices')
check "the sum of n is $n ($SUM_N wanted: each n once)" test "$n" -eq $SUM_N
check "$((TICKS / 2)) distinct n per symbol, n even for BTC_USDT and odd for ETH_USDT" \
    test "$(sql "SELECT string_agg(symbol || ':' || c || ':' || odd, ' ' ORDER BY symbol) FROM
                 (SELECT symbol, count(DISTINCT n) c, bool_or(n % 2 = 1) odd FROM tick_prices
                  GROUP BY symbol) s")" = "BTC_USDT:$((TICKS / 2)):false ETH_USDT:$((TICKS / 2)):true"

# ---------------------------------------------------------------------------
echo "--- (d) dcbus migrate"
recorded=$(sql "SELECT count(*) FROM schema_migrations")
out=$("$DCBUS" migrate "$CFG" 2>&1)
rc=$?
echo "$out" | sed 's/^/    | /'
check "dcbus migrate CONFIG lists and exits 0" test $rc -eq 0
# The sessions table is shared: its migration is listed under every instance.
listed=$(awk '$1 == "applied" { print $4, $5 }' <<<"$out" | sort -u | wc -l)
check "it lists the $recorded migrations recorded, all applied" \
    test "$listed" -eq "$recorded" -a "$(grep -c '^  pending ' <<<"$out")" -eq 0
instances=$(grep -c 'plugin: postgres' "$CFG")
check "it names each of the $instances postgres instances, nothing pending" \
    test "$(grep -c '^  nothing pending$' <<<"$out")" -eq "$instances" -a \
    "$(grep -c '^[a-z_]*: database ' <<<"$out")" -eq "$instances"
out=$("$DCBUS" migrate "$CFG" --yes 2>&1)
rc=$?
check "a second run with --yes applies nothing (exit 0, schema_migrations unchanged)" \
    test $rc -eq 0 -a "$(grep -c '^  nothing pending$' <<<"$out")" -eq "$instances" -a \
    "$(sql "SELECT count(*) FROM schema_migrations")" -eq "$recorded"

{
    config_head
    printf 'workers:\n  later: {plugin: postgres, dsn: "${DATABASE_URL}", table: later_events, migrate: manual}\n'
} >"$TMP/manual.yaml"
out=$("$DCBUS" migrate "$TMP/manual.yaml" 2>&1)
rc=$?
echo "$out" | sed 's/^/    | /'
pending=$(grep -c '^  pending ' <<<"$out")
check "a new table: $pending migrations pending, exit $rc (0), nothing created" \
    test $rc -eq 0 -a "$pending" -ge 2 -a "$(sql "SELECT to_regclass('later_events') IS NULL")" = t
check "it says: $pending pending; run with --yes to apply" \
    grep -q "^  $pending pending; run with --yes to apply$" <<<"$out"
out=$("$DCBUS" migrate "$TMP/manual.yaml" --yes 2>&1)
rc=$?
echo "$out" | sed 's/^/    | /'
check "--yes applies the $pending and creates later_events" \
    test $rc -eq 0 -a "$(grep -c '^  + .* applied to public.later_events$' <<<"$out")" -eq "$pending" \
    -a "$(sql "SELECT to_regclass('later_events') IS NOT NULL")" = t
# tick_prices as the workers made it, but one column fewer: a changed migration.
{
    config_head
    echo "workers:"
    typed_pg pg tick_prices | grep -v quote_volume
} >"$TMP/changed.yaml"
out=$("$DCBUS" migrate "$TMP/changed.yaml" --yes 2>&1)
rc=$?
echo "$out" | sed 's/^/    | /'
check "a mapping changed since the table was made: 'changed', exit $rc (1), nothing applied" \
    test $rc -eq 1 -a "$(grep -c '^  changed .*typed/001_create_table' <<<"$out")" -eq 1 -a \
    "$(grep -c '^  + ' <<<"$out")" -eq 0
"$DCBUS" migrate "$TMP/manual.yaml" --instance ticker_a >/dev/null 2>&1
check "--instance of an instance that is not there is a usage error (exit 2)" test $? -eq 2
"$DCBUS" migrate "$CFG" --instance ticker_a >/dev/null 2>&1
check "--instance of a ticker is a usage error (exit 2)" test $? -eq 2

# ---------------------------------------------------------------------------
echo "--- (e) dcbus query"
"$DCBUS" query pg --broker "$BUS" --filter symbol=BTC_USDT --sort n --desc --limit 5 --offset 2 \
    --json >"$TMP/query.json" 2>"$TMP/query.err"
check "query --json exits 0" test $? -eq 0
sql "SELECT symbol, (extract(epoch FROM ts) * 1000000)::bigint, n, price, volume, quote_volume,
            session_id, stream || ':' || seq || ':' || idx
     FROM tick_prices WHERE symbol = 'BTC_USDT' ORDER BY n DESC LIMIT 5 OFFSET 2" >"$TMP/query.psql"
out=$("$PY" - "$TMP/query.json" "$TMP/query.psql" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
want = [line.rstrip("\n").split("|") for line in open(sys.argv[2])]
keys = ["symbol", "ts", "n", "price", "volume", "quote_volume", "session_id", "_location_id"]
kinds = [str, int, int, float, float, float, str, str]
got = [[r.get(k) for k in keys] for r in rows]
expected = [[kind(v) for kind, v in zip(kinds, w)] for w in want]
if got == expected and len(got) == 5:
    print("the 5 rows are psql's, field for field: n = %s" % [r[2] for r in got])
else:
    print("rows differ:\n got      %s\n expected %s" % (got, expected))
    sys.exit(1)
PY
)
check "$out" test $? -eq 0

"$DCBUS" query pg --config "$CFG" --filter symbol=ETH_USDT --limit 3 >"$TMP/table.out"
rc=$?
check "--config finds the broker; a header, a rule, 3 rows and '(3 rows)' (exit $rc)" \
    test $rc -eq 0 -a "$(wc -l <"$TMP/table.out")" -eq 6 -a "$(tail -n 1 "$TMP/table.out")" = "(3 rows)"

# Each hostile name carries a marker (zqN) to look for in the server's log,
# which has every statement and its parameters (log_statement=all): a
# harmless query's marker is there, the refused ones' are not.
"$DCBUS" query pg --broker "$BUS" --filter symbol=zq0 >/dev/null 2>&1
rc=$?
check "a query for symbol zq0 exits 0 and its parameter is in the server's log" \
    test $rc -eq 0 -a "$(grep -c zq0 "$PG_ENV_DIR/server.log")" -gt 0
for hostile in 'symbol"zq1=BTC_USDT' 'n;DROP TABLE tick_prices;--zq2=1' "n') OR ('zq3'='zq3=1"; do
    "$DCBUS" query pg --broker "$BUS" --filter "$hostile" >"$TMP/hostile.out" 2>"$TMP/hostile.err"
    rc=$?
    check "filter field '${hostile%%=*}' is refused with exit 1: $(head -c 120 "$TMP/hostile.err")" \
        test $rc -eq 1 -a ! -s "$TMP/hostile.out"
done
"$DCBUS" query pg --broker "$BUS" --sort 'n; DROP TABLE tick_prices;--zq4' >/dev/null 2>&1
check "sort field 'n; DROP TABLE tick_prices;--zq4' is refused with exit 1" test $? -eq 1
"$DCBUS" query docs --broker "$BUS" --filter 'a.b"zq5=1' >/dev/null 2>&1
check "generic path 'a.b\"zq5' is refused with exit 1" test $? -eq 1
check "tick_prices is still there with $TICKS rows" test "$(rows_in tick_prices)" -eq $TICKS
check "none of the refused names (zq1..zq5) reached the server" \
    test "$(grep -c 'zq[1-5]' "$PG_ENV_DIR/server.log")" -eq 0

location=$("$PY" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["_location_id"])' \
    "$TMP/query.json")
"$DCBUS" query pg --broker "$BUS" --delete "$location" >"$TMP/delete.out" 2>&1
rc=$?
check "--delete $location exits 0 ($(cat "$TMP/delete.out"))" test $rc -eq 0
check "exactly that row is gone" \
    test "$(rows_in tick_prices)" -eq $((TICKS - 1)) -a \
    "$(sql "SELECT count(*) FROM tick_prices WHERE stream || ':' || seq || ':' || idx = '$location'")" -eq 0
"$DCBUS" query pg --broker "$BUS" --delete "$location" >/dev/null 2>"$TMP/delete.err"
rc=$?
check "deleting it again fails with exit 1: $(cat "$TMP/delete.err")" test $rc -eq 1

"$DCBUS" query nosuch --broker "$BUS" >/dev/null 2>"$TMP/nosuch.err"
rc=$?
check "an instance with no worker: exit 1 ($(cat "$TMP/nosuch.err"))" test $rc -eq 1
"$DCBUS" query pg --broker "$BUS" --filter nofield >/dev/null 2>&1
check "--filter without '=' is a usage error (exit 2)" test $? -eq 2

worker mock "$CFG"
wait_exit mock 20 || die "the mock source finishes"
check_delivered 20 "the broker delivers the mock source's batch to docs"
sql "INSERT INTO docs (data, stream, seq, idx)
     VALUES (jsonb_build_object('n', 100, 'text', E'a,\"b\"\\nc'), 'by-hand', 0, 0)"
"$DCBUS" query docs --broker "$BUS" --csv >"$TMP/docs.csv"
check "query --csv of a generic table exits 0" test $? -eq 0
out=$("$PY" - "$TMP/docs.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
texts = sorted(r["text"] for r in rows)
want = sorted(["record %d" % i for i in range(10)] + ['a,"b"\nc'])
ok = texts == want and all(r["_location_id"] for r in rows) and {r["n"] for r in rows} == {
    str(i) for i in list(range(10)) + [100]}
print("11 rows read back by Python's csv, 'a,\"b\"<newline>c' intact" if ok else "got %r" % rows)
sys.exit(0 if ok else 1)
PY
)
check "$out" test $? -eq 0

# ---------------------------------------------------------------------------
# outage TABLE [COUNT]: once TABLE (or the command COUNT) has STOP_AFTER
# rows, stops the server for OUTAGE_S seconds, then starts it again.  Calls `during` once a second
# while it is down (a no-op unless the caller defines it).
during() { :; }
outage() {
    local i count=${2:-rows_in $1}
    for ((i = 0; i < 300; i++)); do
        (($($count) >= STOP_AFTER)) && break
        sleep 0.1
    done
    (($($count) >= STOP_AFTER)) || return 1
    echo "stopping PostgreSQL with $(rows_in "$1") rows in $1"
    eval "$PG_ENV_STOP" >/dev/null || return 1
    for ((i = 0; i < OUTAGE_S; i++)); do
        during $i
        sleep 1
    done
    during $OUTAGE_S
    eval "$PG_ENV_START" >/dev/null || return 1
    echo "PostgreSQL started again"
}

echo "--- (b) PostgreSQL stopped for $OUTAGE_S s in a $RATE ticks/s run"
t0=$(now)
worker ticker_b "$CFG"
outage tick_outage || die "the server is stopped mid-run and started again"
wait_exit ticker_b 120 || die "ticker_b finishes within 120 s"
check "ticker_b ends with exit 0 after $(seconds_since "$t0") s" test "${STATUS[ticker_b]}" -eq 0
check_delivered 120 "the broker delivers every batch of ticker_b to pg_b"
n=$(rows_in tick_outage)
check "tick_outage has $n rows ($TICKS wanted)" test "$n" -eq $TICKS
n=$(sql 'SELECT sum(n) FROM tick_outage')
check "the sum of n is $n ($SUM_N wanted)" test "$n" -eq $SUM_N
n=$(sql 'SELECT count(*) FROM (SELECT DISTINCT stream, seq, idx FROM tick_outage) d')
check "$n distinct (stream, seq, idx) ($TICKS wanted: none twice)" test "$n" -eq $TICKS

# dual_write TICKER TABLE STREAM CSV_DIR: runs TICKER (-> a csv sink into
# CSV_DIR and the pg sink writing TABLE) through an outage; prints the CSV's
# rows during it; checks the CSV has every record once and ends with the rows
# the CSV had at the end of the outage in $moved (rows the CSV gained while
# the server was down) and in $stalled the rows it gained in the outage's
# last three seconds.
csv_rows() { # csv_rows CSV_DIR STREAM
    local f
    f=$(session_file "$1" "$2")
    [[ -n $f && -e $f ]] && echo $(($(wc -l <"$f") - 1)) || echo 0
}
dual_write() {
    local ticker=$1 table=$2 stream=$3 dir=$4 t0 first last
    progress=()
    during() { progress+=("$1s:$(csv_rows "$dir" "$stream")"); }
    t0=$(now)
    worker "$ticker" "$CFG"
    # Stopped once the CSV (not the table) is that far: a lagging pg may
    # reach it only after the run, and the outage must fall inside the run.
    outage "$table" "csv_rows $dir $stream" || die "the server is stopped mid-run and started again"
    echo "csv rows while PostgreSQL was down (seconds into the outage:rows): ${progress[*]}"
    echo "csv rows just after the restart: $(csv_rows "$dir" "$stream")"
    first=${progress[0]#*:} last=${progress[-1]#*:}
    moved=$((last - first))
    stalled=$((last - ${progress[-4]#*:}))
    wait_exit "$ticker" 120 || die "$ticker finishes within 120 s"
    check "$ticker ends with exit 0 after $(seconds_since "$t0") s" test "${STATUS[$ticker]}" -eq 0
    check_delivered 120 "the broker delivers every batch of $ticker (nothing in flight)"
    exactly_once "$(session_file "$dir" "$stream")" $TICKS
}

# caught_up TABLE SECONDS: waits until TABLE has TICKS rows, then checks them.
caught_up() {
    local i n t0
    t0=$(now)
    for ((i = 0; i < $2 * 10; i++)); do
        (($(rows_in "$1") >= TICKS)) && break
        sleep 0.1
    done
    n=$(rows_in "$1")
    check "PostgreSQL caught up: $1 has $n rows ($TICKS wanted; waited $(seconds_since "$t0") s)" \
        test "$n" -eq $TICKS
    n=$(sql "SELECT sum(n) FROM $1")
    check "the sum of n is $n ($SUM_N wanted)" test "$n" -eq $SUM_N
}

echo "--- (c) to: [csv, pg], PostgreSQL stopped for $OUTAGE_S s"
dual_write ticker_c tick_dual c_prices "$TMP/csv_c"
# With pg critical the broker holds at most memory_batches (64) batches of
# the pipeline that pg has not acknowledged: the CSV may take what is
# already in flight when the server stops, at most 64 batches of 1,000
# ticks, and then stands still until pg acknowledges again.
window=$((64 * 1000))
check "pg is critical: the CSV took at most the in-flight window ($moved <= $window rows)" \
    test $moved -le $window
check "pg is critical: the CSV stood still once the window was spent (last 3 s: $stalled rows)" \
    test $stalled -eq 0
caught_up tick_dual 0

echo "--- (c') to: [csv, pg] with pg critical: false, PostgreSQL stopped for $OUTAGE_S s"
dual_write ticker_d tick_lagging d_prices "$TMP/csv_d"
check "the CSV went on during the outage ($moved rows)" test $moved -gt 0
caught_up tick_lagging 60
n=$(grep -c 'batch abandoned' "$TMP/broker.log")
check "the broker gave no batch up ($n abandoned)" test "$n" -eq 0

# pg was idle through both outages: its connection died without it
# noticing, and the first query finds it dead, replaces it and is answered.
"$DCBUS" query pg --broker "$BUS" --limit 1 >/dev/null 2>"$TMP/stale.err"
first=$?
check "the first query of pg, idle through the outages, is answered (exit $first $(cat "$TMP/stale.err"))" \
    test $first -eq 0

s=$(stats) || die "the broker answers the stats request"
check "stats: no batch left in flight" test "$(stat_value batches_in_flight "$s")" -eq 0
for name in $SINKS broker; do
    stop $name
    check "$name stops on SIGTERM with exit 0" test "${STATUS[$name]}" -eq 0
done
echo "total $(seconds_since "$t_test") s"
finish
