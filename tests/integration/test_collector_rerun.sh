#!/usr/bin/env bash
# test_collector_rerun.sh -- a collector that finished its source collects
# nothing when started again, and a new run when asked for one (--run); one
# that was stopped half way goes on where it was.  The ticker
# (deterministic: the same records each run) runs to the end; the broker is
# restarted (its spool read back) and the ticker started again.
# It checks that
#   - started again as it was, the ticker finds its run finished and ends
#     at once, having collected nothing;
#   - started with --run NEW, it collects a new run: its records are stored
#     again, in a session of their own, n 0..N-1 once each, not skipped as
#     duplicates;
#   - a run stopped with SIGTERM half way resumes after a broker restart:
#     the third session plus the rest of the run make exactly one run.
. "$(dirname "$0")/lib.sh"

TICKS=200000

ticks_config "$TMP/bus.yaml" $TICKS "rate: 100000"
start_bus() {
    broker "$TMP/bus.yaml"
    worker csv "$TMP/bus.yaml"
    worker validate "$TMP/bus.yaml"
    wait_joined csv && wait_joined validate || die "the sink and the processor join the broker"
}
stop_bus() {
    stop validate
    stop csv
    stop broker
}
sessions() { find "$TMP/csv" -mindepth 1 -maxdepth 1 -type d ! -name reference | sort; }

start_bus
worker ticker "$TMP/bus.yaml"
wait_exit ticker 60 || die "the first run finishes"
wait_delivered 60 || die "the first run is delivered (in flight: $IN_FLIGHT)"
stop_bus

start_bus
worker ticker "$TMP/bus.yaml"
wait_exit ticker 60 || die "the ticker started again ends"
check "started again, the ticker finds its run finished" \
    grep -q 'msg="run already finished: nothing new to collect' "$TMP/ticker.log"
check "...and collects nothing" test "$(grep -c '"source exhausted"' "$TMP/ticker.log")" -eq 0
start ticker "$BIN/dcbus-worker" --instance ticker --config "$TMP/bus.yaml" --run ticker-second
wait_exit ticker 60 || die "the second run finishes"
check "asked for a new run, the ticker starts it" \
    grep -q 'msg="starting new run" run=ticker-second' "$TMP/ticker.log"
wait_delivered 60 || die "the second run is delivered (in flight: $IN_FLIGHT)"
mapfile -t dirs < <(sessions)
check "two runs, two sessions (${#dirs[@]})" test ${#dirs[@]} -eq 2
for d in "${dirs[@]}"; do exactly_once "$d/prices.csv" $TICKS; done

# A third run (a new broker: a session of its own), stopped half way, then
# the broker restarted.
stop_bus
start_bus
start ticker "$BIN/dcbus-worker" --instance ticker --config "$TMP/bus.yaml" --run ticker-third
sleep 1
stop ticker
check "the stopped run exits 0" test "${STATUS[ticker]}" -eq 0
wait_delivered 60 || die "the stopped run's batches are delivered"
stop_bus
start_bus
worker ticker "$TMP/bus.yaml"
wait_exit ticker 60 || die "the resumed run finishes"
check "the stopped run is continued" grep -q 'msg="continuing run" run=ticker-third' \
    "$TMP/ticker.log"
wait_delivered 60 || die "the resumed run is delivered (in flight: $IN_FLIGHT)"
stop csv
mapfile -t dirs < <(sessions)
check "the stopped run and its resumption: two more sessions (${#dirs[@]} in all)" \
    test ${#dirs[@]} -eq 4
cat "${dirs[2]}/prices.csv" <(tail -n +2 "${dirs[3]}/prices.csv") >"$TMP/resumed.csv"
check "the stopped run was cut short ($(($(wc -l <"${dirs[2]}/prices.csv") - 1)) rows)" \
    test "$(($(wc -l <"${dirs[2]}/prices.csv") - 1))" -lt $TICKS
exactly_once "$TMP/resumed.csv" $TICKS
finish
