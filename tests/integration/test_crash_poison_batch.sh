#!/usr/bin/env bash
# test_crash_poison_batch.sh -- a batch that crashes its worker is isolated.
#
# `dcbus run` of ticker (10,000 ticks in batches of 500) -> crashy
# (mock-processor, pass, but SIGSEGV in process() of the batch holding the
# tick n = 4321) -> csv, with max_attempts 3 and the chain [deadletter].
# Each crash kills the worker and the supervisor starts a new one.  The
# broker charges a death to the batch the worker held alone (after the
# first crash, the batches that were held beside it go out one at a time),
# so after 3 deaths that batch is a poison batch and the pipeline goes on.
# It checks that
#   - the run ends by itself with exit 0 ("every collector finished"),
#     not "a child kept failing", and crashy was restarted;
#   - the dead letter is that one batch: PROCESSING, 3 attempts, at crashy;
#   - the CSV has every other record exactly once: the missing n are one
#     run of consecutive values holding 4321, as many as the dead letter
#     holds; the order book is whole, in order;
#   - the run's summary counts the deaths.
. "$(dirname "$0")/lib.sh"

TICKS=10000
BOOKS=$((TICKS / 10))
POISON_N=4321
CFG=$TMP/bus.yaml
cat >"$CFG" <<YAML
broker: {bus: $BUS, topics: $TOPICS, heartbeat_ms: 200, spool: $TMP/spool, max_attempts: 3}
plugins_path: [$BUILD/plugins]
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $TICKS, batch: 500, seed: 3,
           start_ts: 1700000000000000}
  crashy: {plugin: mock-processor, mode: pass, fault: segv, fault_n: $POISON_N,
           call_log: $TMP/calls.log}
  deadletter: {plugin: deadletter, dir: $TMP/dead}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, through: [crashy], to: [csv]}
error_handlers: [deadletter]
YAML

start run "$BIN/dcbus" run --stop-timeout 20 "$CFG"
wait_exit run 180 || die "dcbus run ends within 180 s"
check "dcbus run ends by itself with exit 0 (got ${STATUS[run]})" test "${STATUS[run]}" -eq 0
check "it ends because the collector finished, not because a child kept failing" \
    grep -q "(every collector finished)" "$TMP/run.log"
check "crashy was restarted after its crashes" \
    grep -q 'msg="child restarted" instance=crashy' "$TMP/run.log"
crashes=$(grep -c 'msg="child failed; restarting" instance=crashy' "$TMP/run.log")
check "crashy crashed 3 to 9 times ($crashes)" test "$crashes" -ge 3 -a "$crashes" -le 9
deaths=$(awk '$1 == "crashy" { print $6 }' "$TMP/run.log" | tail -n 1)
check "the summary counts crashy's deaths holding batches ($deaths)" test "${deaths:-0}" -ge 3

"$BIN/dcbus" deadletter list "$CFG" --json >"$TMP/list.json" 2>"$TMP/list.err" ||
    not_ok "dcbus deadletter list answers ($(cat "$TMP/list.err"))"
report "$("$PY" - "$TMP/list.json" "$(session_file "$TMP/csv" prices)" $TICKS $POISON_N <<'PY'
import csv, json, sys
letters = json.load(open(sys.argv[1]))["dead_letters"]
if len(letters) != 1:
    print("FAIL: one dead letter, got %d" % len(letters))
    sys.exit()
d = letters[0]
got = (d["error_type"], d["attempts"], d["instance"], d["pipeline"])
print("%s: the dead letter is a PROCESSING failure after 3 attempts at crashy %s"
      % ("ok" if got == ("PROCESSING", 3, "crashy", "ticks") else "FAIL", got))
with open(sys.argv[2], newline="") as f:
    reader = csv.reader(f)
    col = next(reader).index("n")
    ns = [int(row[col]) for row in reader]
ticks, poison = int(sys.argv[3]), int(sys.argv[4])
missing = sorted(set(range(ticks)) - set(ns))
print("%s: no record twice in prices.csv (%d rows, %d distinct)"
      % ("ok" if len(ns) == len(set(ns)) else "FAIL", len(ns), len(set(ns))))
whole = (missing and missing[0] <= poison <= missing[-1]
         and missing == list(range(missing[0], missing[-1] + 1))
         and len(missing) == d["records"])
print("%s: only the poison batch is missing: n %s..%s (%d records, the dead letter has %d)"
      % ("ok" if whole else "FAIL", missing[0] if missing else "-",
         missing[-1] if missing else "-", len(missing), d["records"]))
PY
)"
exactly_once "$(session_file "$TMP/csv" orderbook)" $BOOKS
finish
