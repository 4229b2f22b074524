#!/usr/bin/env bash
# test_pipeline_exact.sh -- exactly once through the real bus: 1,000,000
# ticks, and the 100,000 order-book snapshots they make due, from the
# ticker through json-validate to the csv sink, with the broker and one
# worker process per instance.  It checks that
#   - the collector ends by itself (source exhausted, every batch
#     acknowledged by the broker's spool) with exit status 0;
#   - the broker then delivers every batch to the sink (batches_in_flight
#     reaches 0), and counted every record through every stage;
#   - each stream's CSV file is byte for byte what dcbus-reference writes
#     from the same config with no broker (tests/tools/reference.c);
#   - independently of the reference, n is 0..N-1, in order, once each,
#     on both streams;
#   - every process stops cleanly on SIGTERM.
. "$(dirname "$0")/lib.sh"

TICKS=1000000
BOOKS=$((TICKS / 10))
TOTAL=$((TICKS + BOOKS))

ticks_config "$TMP/bus.yaml" $TICKS
broker "$TMP/bus.yaml"
worker csv "$TMP/bus.yaml"
worker validate "$TMP/bus.yaml"
wait_joined csv && wait_joined validate || die "the sink and the processor join the broker"
t0=$(now)
worker ticker "$TMP/bus.yaml"
wait_exit ticker 120 || die "the collector finishes $TOTAL records within 120 s"
check "the collector ends by itself with exit 0 after $(seconds_since "$t0") s" \
    test "${STATUS[ticker]}" -eq 0
check_delivered 120 "the broker delivers every batch to the sink"

s=$(stats) || die "the broker answers the stats request"
check "stats: no batch left in flight" test "$(stat_value batches_in_flight "$s")" -eq 0
check "stats: the collector sent $TOTAL records" test "$(stat_value ticker.records_out "$s")" -eq $TOTAL
check "stats: the processor passed on $TOTAL records" \
    test "$(stat_value validate.records_out "$s")" -eq $TOTAL
check "stats: the sink acknowledged $TOTAL records" test "$(stat_value csv.records_out "$s")" -eq $TOTAL
check "stats: no malformed message" test "$(stat_value malformed "$s")" -eq 0

for name in validate csv broker; do
    stop $name
    check "$name stops on SIGTERM with exit 0" test "${STATUS[$name]}" -eq 0
done

ticks_config "$TMP/reference.yaml" $TICKS
check "dcbus-reference runs the same pipeline in process" reference "$TMP/reference.yaml"
same_as_reference "$TMP/csv"
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
exactly_once "$(session_file "$TMP/csv" orderbook)" $BOOKS
finish
