#!/usr/bin/env bash
# test_slow_call_heartbeats.sh -- a plugin call far longer than the
# heartbeat time-out does not get a healthy worker dropped.
#
# ticker (2,000 ticks in batches of 1,000) -> slow (mock-processor, pass,
# every process() call sleeps 10 s) -> csv, with 200 ms heartbeats (a peer
# silent for 600 ms is dead).  The keeper thread of the worker heartbeats
# while process() sleeps.  It checks that
#   - the broker never declares the slow worker gone, and the worker never
#     thinks the broker silent;
#   - nothing is delivered twice: the mock's call log has each batch once,
#     and as many lines as the broker says it gave the slow stage;
#   - stats count no death; every record reaches the sink once, in order.
. "$(dirname "$0")/lib.sh"

TICKS=2000
BOOKS=$((TICKS / 10))
CALLS=$TMP/calls.log
{
    config_head
    cat <<YAML
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $TICKS, batch: 1000, seed: 5,
           start_ts: 1700000000000000}
  slow: {plugin: mock-processor, mode: pass, delay_ms: 10000, call_log: $CALLS}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, through: [slow], to: [csv]}
YAML
} >"$TMP/bus.yaml"

broker "$TMP/bus.yaml"
worker csv "$TMP/bus.yaml"
worker slow "$TMP/bus.yaml"
wait_joined csv && wait_joined slow || die "the sink and the slow processor join the broker"
t0=$(now)
worker ticker "$TMP/bus.yaml"
wait_exit ticker 60 || die "the collector finishes within 60 s"
check "the collector ends by itself with exit 0" test "${STATUS[ticker]}" -eq 0
check_delivered 120 "the broker delivers every batch through the 10 s calls to the sink"
echo "# took $(seconds_since "$t0") s"

check "the broker never declared the slow worker gone" \
    bash -c "! grep -q 'msg=\"worker left\" instance=slow' '$TMP/broker.log'"
check "the slow worker never thought the broker silent" \
    bash -c "! grep -q 'reconnecting to the broker' '$TMP/slow.log'"
s=$(stats) || die "the broker answers the stats request"
calls=$(wc -l <"$CALLS")
distinct=$(sort -u "$CALLS" | wc -l)
given=$(stat_value slow.batches_in "$s")
check "process() ran $calls times, once per batch ($distinct distinct)" \
    test "$calls" -eq "$distinct" -a "$calls" -ge 2
# ... and the source's end marker of each of the two streams (prices,
# orderbook), which the host answers without calling the plugin.
check "the broker gave the slow stage $given batches: no redelivery" test "$given" -eq $((calls + 2))
check "stats: no death of the slow worker" test "$(stat_value slow.deaths "$s")" -eq 0
check "stats: the sink acknowledged $((TICKS + BOOKS)) records" \
    test "$(stat_value csv.records_out "$s")" -eq $((TICKS + BOOKS))
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
exactly_once "$(session_file "$TMP/csv" orderbook)" $BOOKS
for name in slow csv broker; do
    stop $name
    check "$name stops on SIGTERM with exit 0" test "${STATUS[$name]}" -eq 0
done
finish
