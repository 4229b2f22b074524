#!/usr/bin/env bash
# test_pg_sessions.sh -- seed 004's sessions table written by the postgres
# sink through the bus, exact through a kill -9, against a throwaway
# PostgreSQL 15 (pg_env.sh).
#
# ticker (three symbols, prices and 3-level order books, rate-limited so the
# run lasts a few seconds) -> postgres (generic table), in a `collection`
# session started with `dcbus sessions start`.  The postgres worker is killed
# with SIGKILL twice while the ticker runs (so groups it had stored but not
# yet acknowledged come again) and started again each time.  Then, after the
# session ends, its row must say: status completed, start and end time and
# duration, records_collected = records_count = the rows of the session in
# the table = ticks + order books, prices_count and orderbook_count = the
# rows of each stream, symbols the ticker's three, data_types
# {orderbook,prices}, errors_count 0 -- every count exact though batches
# may have come twice (how many groups held redelivered rows is printed: a
# kill between a commit and its acknowledgement is a matter of timing; the
# unit test of the plugin redelivers on purpose).  The idle session the ticker did not write in has no
# counts.  Last, `dcbus sessions close --wait` (a bus about to stop): the
# idle session's row is completed before the sink stops.
root=${DCBUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$root/tests/integration/pg_env.sh" || exit 1
. "$(dirname "$0")/lib.sh"
trap 'lib_cleanup; pg_env_cleanup' EXIT

TICKS=60000
BOOKS=$((TICKS / 10)) # one snapshot every 10 ticks of a symbol
CFG=$TMP/sessions.yaml
sql() { "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
{
    config_head
    echo "workers:"
    echo "  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT, SOL_USDT], rate: 15000,"
    echo "           limit: $TICKS, batch: 250, linger_ms: 20}"
    echo "  pg: {plugin: postgres, dsn: \"\${DATABASE_URL}\", table: ticks, reconnect_max_ms: 500}"
    echo "pipelines:"
    echo "  p: {from: ticker, to: [pg]}"
} >"$CFG"

broker "$CFG"
worker pg "$CFG"
wait_joined pg || die "the postgres worker joins"
session=$("$BIN/dcbus" sessions start collection --meta source=ticker --config "$CFG" | awk '{print $3}')
check "a collection session starts ($session)" test -n "$session"
worker ticker "$CFG"

rows() { sql "SELECT count(*) FROM ticks"; }
for kill in 1 2; do
    want=$((kill * TICKS / 4))
    for ((i = 0; i < 400 && $(rows) < want; i++)); do sleep 0.05; done
    kill -KILL "${PID[pg]}"
    wait_exit pg 5
    check "kill -9 of the postgres worker ($kill) with $(rows) rows stored" test "${STATUS[pg]}" -eq 137
    worker pg "$CFG"
done
check "the ticker finishes" wait_exit ticker 60
check_delivered 60 "every batch is delivered"
"$BIN/dcbus" sessions end --config "$CFG" >/dev/null
check "the session ends" test $? -eq 0
for ((i = 0; i < 200; i++)); do
    [ "$(sql "SELECT status FROM data_collection_sessions WHERE session_id = '$session'")" = completed ] && break
    sleep 0.05
done

check "the table holds every record once: $(rows) rows" \
    test "$(sql "SELECT count(*) || ',' || count(DISTINCT (stream, data->>'n')) FROM ticks")" = "$((TICKS + BOOKS)),$((TICKS + BOOKS))"
row=$(sql "SELECT status, records_collected, records_count, prices_count, orderbook_count, errors_count,
                  array_to_string(symbols, ' '), array_to_string(data_types, ' '),
                  start_time IS NOT NULL AND end_time > start_time,
                  abs(duration_seconds - extract(epoch FROM end_time - start_time)) < 1e-6
           FROM data_collection_sessions WHERE session_id = '$session'")
echo "    | $row"
IFS='|' read -r status collected count prices books errors symbols types times duration <<<"$row"
check "status completed" test "$status" = completed
check "records_collected = records_count = rows of the session ($collected)" \
    test "$collected" -eq $((TICKS + BOOKS)) -a "$count" -eq "$collected" -a \
    "$(sql "SELECT count(*) FROM ticks WHERE data IS NOT NULL")" -eq "$collected"
check "prices_count = $TICKS, orderbook_count = $BOOKS, exact through the kills ($prices, $books)" \
    test "$prices" -eq $TICKS -a "$books" -eq $BOOKS
check "symbols are the ticker's ($symbols)" test "$symbols" = "BTC_USDT ETH_USDT SOL_USDT"
check "data_types are orderbook and prices ($types)" test "$types" = "orderbook prices"
check "errors_count 0" test "$errors" -eq 0
check "start, end and duration" test "$times" = t -a "$duration" = t
echo "    | groups with redelivered rows merged: $(grep -c "a group held redelivered rows" "$TMP/pg.log")"
check "no other session has counts" \
    test "$(sql "SELECT count(*) FROM data_collection_sessions WHERE session_id <> '$session' AND records_count > 0")" -eq 0
# The bus about to stop: the idle session begun by the end above is closed,
# and its row says so before the sink is stopped.
out=$("$BIN/dcbus" sessions close --wait 30 --config "$CFG")
check "sessions close --wait: every sink closed it" test $? -eq 0
idle=$(sed -n 's/^closed session \([^;]*\);.*/\1/p' <<<"$out")
check "the idle session's row is completed, with its end ($idle)" \
    test "$(sql "SELECT status || ',' || (end_time IS NOT NULL) FROM data_collection_sessions WHERE session_id = '$idle'")" = "completed,true"
finish
