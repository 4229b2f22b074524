#!/usr/bin/env bash
# test_hung_call_restarted.sh -- a plugin call that never returns is a hang:
# reported, its worker restarted, its batch delivered exactly once.
#
# `dcbus run` of ticker (5,000 ticks in batches of 500) -> slow
# (mock-processor, pass, but process() of the batch holding tick n = 1234
# never returns -- once: fault_once) -> csv, with call_timeout_ms 2000 at
# slow.  It checks that
#   - the hang is reported: an error on error.PROCESSING.processing names
#     the call and the time-out, the worker logs it and exits, the broker
#     counts it (the run's summary: hangs 1) and the supervisor restarts it;
#   - the run ends by itself with exit 0;
#   - the hung batch is processed again by the new worker, no other twice
#     (the mock's call log), and the CSV has every record exactly once.
. "$(dirname "$0")/lib.sh"

TICKS=5000
BOOKS=$((TICKS / 10))
CFG=$TMP/bus.yaml
CALLS=$TMP/calls.log
{
    config_head
    cat <<YAML
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $TICKS, batch: 500, seed: 9,
           start_ts: 1700000000000000}
  slow: {plugin: mock-processor, mode: pass, fault: hang, fault_n: 1234, fault_once: $TMP/hung,
         call_timeout_ms: 2000, call_log: $CALLS}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, through: [slow], to: [csv]}
YAML
} >"$CFG"

start watch "$BIN/dcbus" watch --topics "$TOPICS" error. --json --count 1 --timeout 120
start run "$BIN/dcbus" run --stop-timeout 20 "$CFG"
wait_exit run 120 || die "dcbus run ends within 120 s"
check "dcbus run ends by itself with exit 0 (got ${STATUS[run]})" test "${STATUS[run]}" -eq 0
check "it ends because the collector finished" grep -q "(every collector finished)" "$TMP/run.log"
check "the slow worker said its call hung and exited" \
    grep -q 'msg="plugin call hung; exiting" call=process' "$TMP/run.log"
check "the broker took it as a hang" \
    grep -q 'msg="worker left" instance=slow replica=0 reason="a plugin call hung"' "$TMP/run.log"
check "the supervisor restarted it" grep -q 'msg="child restarted" instance=slow' "$TMP/run.log"
hangs=$(awk '$1 == "slow" { print $7 }' "$TMP/run.log" | tail -n 1)
check "the run's summary counts one hang at slow (${hangs:-none})" test "${hangs:-0}" -eq 1
wait_exit watch 10
check "the hang was published on the error topic" \
    grep -q 'did not return within call_timeout_ms=2000' "$TMP/watch.log"
calls=$(wc -l <"$CALLS")
distinct=$(sort -u "$CALLS" | wc -l)
check "only the hung batch was processed twice ($calls calls, $distinct batches)" \
    test "$calls" -eq $((distinct + 1))
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
exactly_once "$(session_file "$TMP/csv" orderbook)" $BOOKS
finish
