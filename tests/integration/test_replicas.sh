#!/usr/bin/env bash
# test_replicas.sh -- two replicas of one processor share its load and the
# output stays exact.  1,000,000 ticks (plus 100,000 order-book snapshots)
# go ticker -> json-validate (replicas: 2, two worker processes) -> csv.
# It checks that
#   - the broker sees both replicas of the processor;
#   - the collector ends by itself, and the broker then delivers every
#     batch to the sink (batches_in_flight reaches 0);
#   - each replica checked some of the records (its "records checked" line
#     when it stops), and together exactly all of them: no batch went to
#     both, none to neither;
#   - the CSV files are byte for byte dcbus-reference's, and n is 0..N-1
#     in order once each: the broker puts batches back in collector order
#     per stream, whichever replica finishes first.
. "$(dirname "$0")/lib.sh"

TICKS=1000000
BOOKS=$((TICKS / 10))
TOTAL=$((TICKS + BOOKS))

ticks_config "$TMP/bus.yaml" $TICKS "" "replicas: 2"
broker "$TMP/bus.yaml"
worker csv "$TMP/bus.yaml"
worker validate "$TMP/bus.yaml" 0
worker validate "$TMP/bus.yaml" 1
wait_joined csv && wait_joined validate 0 && wait_joined validate 1 ||
    die "the sink and both processor replicas join the broker"
s=$(stats) || die "the broker answers the stats request"
check "stats: the processor has 2 replicas" test "$(stat_value validate.replicas "$s")" -eq 2

t0=$(now)
worker ticker "$TMP/bus.yaml"
wait_exit ticker 120 || die "the collector finishes $TOTAL records within 120 s"
check "the collector ends by itself with exit 0 after $(seconds_since "$t0") s" \
    test "${STATUS[ticker]}" -eq 0
check_delivered 120 "the broker delivers every batch to the sink"
s=$(stats) || die "the broker answers the stats request"
check "stats: no batch left in flight" test "$(stat_value batches_in_flight "$s")" -eq 0
check "stats: the processor instance passed on $TOTAL records" \
    test "$(stat_value validate.records_out "$s")" -eq $TOTAL

# records_checked REPLICA: what the replica's json-validate says it checked.
records_checked() {
    sed -nE 's/.*json-validate: ([0-9]+) records checked.*/\1/p' "$TMP/validate.$1.log" | tail -n 1
}
sum=0
for r in 0 1; do
    stop validate.$r
    check "replica $r stops on SIGTERM with exit 0" test "${STATUS[validate.$r]}" -eq 0
    n=$(records_checked $r)
    check "replica $r checked a share of the records: ${n:-none}" test "${n:-0}" -gt 0
    sum=$((sum + ${n:-0}))
done
check "the replicas checked $sum records together: each record once ($TOTAL)" test $sum -eq $TOTAL
stop csv
stop broker

ticks_config "$TMP/reference.yaml" $TICKS
check "dcbus-reference runs the same pipeline in process" reference "$TMP/reference.yaml"
same_as_reference "$TMP/csv"
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
exactly_once "$(session_file "$TMP/csv" orderbook)" $BOOKS
finish
