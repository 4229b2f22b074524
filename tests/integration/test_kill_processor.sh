#!/usr/bin/env bash
# test_kill_processor.sh -- a processor replica killed with SIGKILL while
# data flows loses nothing and duplicates nothing.
#
# ticker (500,000 ticks in batches of 5,000) -> slow (mock-processor, mode
# double: every record gets a `doubled` field, so a batch that skipped the
# stage would show; 20 ms a batch; 2 replicas) -> json-validate -> csv.
# Each slow replica holds up to a credit's worth of batches, so the one
# killed has batches in hand.  It checks that
#   - the kill happens mid-run: the sink has some of the records, not all;
#   - the broker declares the replica dead after the heartbeat time-out
#     and hands the batches it held to the other replica;
#   - the collector still ends by itself, the broker then delivers every
#     batch to the sink (batches_in_flight reaches 0), the CSV files are
#     byte for byte dcbus-reference's, and n is 0..N-1 in order once each.
. "$(dirname "$0")/lib.sh"

TICKS=500000
BOOKS=$((TICKS / 10))
TOTAL=$((TICKS + BOOKS))

# pipeline_config FILE DELAY_MS
pipeline_config() {
    {
        config_head
        cat <<YAML
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $TICKS, batch: 5000, seed: 11,
           start_ts: 1700000000000000}
  slow: {plugin: mock-processor, mode: double, delay_ms: $2, replicas: 2}
  validate: {plugin: json-validate, required: [symbol, ts, n, doubled]}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, through: [slow, validate], to: [csv]}
YAML
    } >"$1"
}

pipeline_config "$TMP/bus.yaml" 20
broker "$TMP/bus.yaml"
worker csv "$TMP/bus.yaml"
worker validate "$TMP/bus.yaml"
worker slow "$TMP/bus.yaml" 0
worker slow "$TMP/bus.yaml" 1
wait_joined csv && wait_joined validate && wait_joined slow 0 && wait_joined slow 1 ||
    die "the sink, the validator and both slow replicas join the broker"
t0=$(now)
worker ticker "$TMP/bus.yaml"

# Wait until records reach the sink, then kill replica 1 at once.
for ((i = 0; i < 200; i++)); do
    s=$(stats) && (($(stat_value csv.records_out "$s") > 0)) && break
    sleep 0.05
done
kill -KILL "${PID[slow.1]}"
killed_at=$(seconds_since "$t0")
wait_exit slow.1 5
check "slow replica 1 killed with SIGKILL ${killed_at} s into the run (status ${STATUS[slow.1]})" \
    test "${STATUS[slow.1]}" -eq 137
at_kill=$(stat_value csv.records_out "$s")
check "the kill came mid-run: the sink had $at_kill of $TOTAL records" \
    test "$at_kill" -gt 0 -a "$at_kill" -lt $TOTAL

left='msg="worker left" instance=slow replica=1 reason="missed heartbeats"'
if wait_for "$TMP/broker.log" "$left" 5; then
    handed=$(grep -F "$left" "$TMP/broker.log" | sed -nE 's/.*redelivering=([0-9]+).*/\1/p')
    check "the broker declared replica 1 dead and redelivered the $handed batches it held" \
        test "${handed:-0}" -gt 0
else
    not_ok "the broker declares the killed replica dead (missed heartbeats) within 5 s"
fi

wait_exit ticker 120 || die "the collector finishes within 120 s"
check "the collector ends by itself with exit 0 after $(seconds_since "$t0") s" \
    test "${STATUS[ticker]}" -eq 0
check_delivered 120 "the broker delivers every batch to the sink"
s=$(stats) || die "the broker answers the stats request"
check "stats: no batch left in flight" test "$(stat_value batches_in_flight "$s")" -eq 0
check "stats: the sink acknowledged $TOTAL records" test "$(stat_value csv.records_out "$s")" -eq $TOTAL
check "stats: one slow replica left" test "$(stat_value slow.replicas "$s")" -eq 1
# The survivor was busy the whole time, the broker talking to it all along.
never_reconnected() { ! grep -q "reconnecting to the broker" "$1"; }
check "the surviving replica kept its link (never thought the broker silent)" \
    never_reconnected "$TMP/slow.0.log"
for name in slow.0 validate csv broker; do
    stop $name
    check "$name stops on SIGTERM with exit 0" test "${STATUS[$name]}" -eq 0
done

pipeline_config "$TMP/reference.yaml" 0
check "dcbus-reference runs the same pipeline in process" reference "$TMP/reference.yaml"
same_as_reference "$TMP/csv"
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
exactly_once "$(session_file "$TMP/csv" orderbook)" $BOOKS
finish
