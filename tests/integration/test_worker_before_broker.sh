#!/usr/bin/env bash
# test_worker_before_broker.sh -- workers may start before the broker.
# Every worker of ticker -> json-validate -> csv (200,000 ticks) starts
# first; the broker starts 2 s later.  It checks that
#   - the workers are still running when the broker comes up (none gave
#     up or exited for want of a broker);
#   - each then registers, data flows, the collector ends by itself, and
#     the broker then delivers every batch to the sink;
#   - the output is byte for byte dcbus-reference's, n 0..N-1 once each.
. "$(dirname "$0")/lib.sh"

TICKS=200000
BOOKS=$((TICKS / 10))
TOTAL=$((TICKS + BOOKS))

ticks_config "$TMP/bus.yaml" $TICKS
worker csv "$TMP/bus.yaml"
worker validate "$TMP/bus.yaml"
worker ticker "$TMP/bus.yaml"
sleep 2
for name in csv validate ticker; do
    check "$name is still waiting for the broker after 2 s" running $name
done
check "nothing reached the sink without a broker" test ! -e "$TMP/csv/"*/prices.csv
t0=$(now)
broker "$TMP/bus.yaml"
for name in csv validate ticker; do
    check "$name registers once the broker is up" \
        wait_for "$TMP/$name.log" 'msg="registered with the broker"' 10
done
wait_exit ticker 60 || die "the collector finishes $TOTAL records within 60 s of the broker's start"
check "the collector ends by itself with exit 0, $(seconds_since "$t0") s after the broker started" \
    test "${STATUS[ticker]}" -eq 0
check_delivered 60 "the broker delivers every batch to the sink"
s=$(stats) || die "the broker answers the stats request"
check "stats: no batch left in flight" test "$(stat_value batches_in_flight "$s")" -eq 0
check "stats: the sink acknowledged $TOTAL records" test "$(stat_value csv.records_out "$s")" -eq $TOTAL
for name in validate csv broker; do
    stop $name
    check "$name stops on SIGTERM with exit 0" test "${STATUS[$name]}" -eq 0
done

check "dcbus-reference runs the same pipeline in process" reference "$TMP/bus.yaml"
same_as_reference "$TMP/csv"
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
exactly_once "$(session_file "$TMP/csv" orderbook)" $BOOKS
finish
