#!/usr/bin/env bash
# test_tasks_pause.sh -- `dcbus pause` stops a collector mid-run, `dcbus
# resume` lets it finish, and its task says so.
#
# ticker (20,000 ticks at 5,000 a second) -> csv.  Once a fifth of the run
# is through, `dcbus pause ticker`; 1.5 s later `dcbus resume ticker`.  It
# checks that
#   - pause answers PAUSED and resume RUNNING (also with --json), and the
#     broker's stats show the collector PAUSED meanwhile;
#   - while paused, neither the task's progress nor the CSV grow (after
#     the batches already sent have arrived), and the task stays RUNNING;
#   - after resume the run completes: task COMPLETED with progress 1, all
#     records in the CSV, once each;
#   - pausing a collector the config does not have, or one that is not
#     connected, is refused with exit status 1.
. "$(dirname "$0")/lib.sh"

TICKS=20000
CFG=$TMP/bus.yaml
{
    printf 'broker: {bus: %s, topics: %s, spool: %s, heartbeat_ms: 200}\n' \
        "$BUS" "$TOPICS" "$TMP/spool"
    printf 'plugins_path: [%s]\n' "$BUILD/plugins"
    cat <<YAML
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT], limit: $TICKS, rate: 5000, batch: 100,
           orderbook: false}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, to: [csv]}
YAML
} >"$CFG"

dcbus() { "$BIN/dcbus" "$@"; }

# progress: the collection task's progress and records, "P R".
progress() {
    dcbus tasks --config "$CFG" --json | "$PY" -c '
import json, re, sys
for t in json.load(sys.stdin)["tasks"]:
    if re.fullmatch(r"ticker-\d+", t["id"]):
        print(t["progress"], t["records"], t["status"])'
}
rows() { cat "$TMP"/csv/*/prices.csv 2>/dev/null | wc -l; }

broker "$CFG"
worker csv "$CFG"
wait_joined csv || die "the sink joins the broker"
dcbus pause --config "$CFG" ticker 2>"$TMP/not-connected.txt"
rc=$?
check "pausing a collector that is not connected is refused (exit $rc): $(cat "$TMP/not-connected.txt")" \
    test $rc -eq 1
dcbus pause --config "$CFG" nobody 2>"$TMP/nobody.txt"
rc=$?
check "pausing a collector the config lacks is refused (exit $rc): $(cat "$TMP/nobody.txt")" \
    test $rc -eq 1

worker ticker "$CFG"
for ((i = 0; i < 100; i++)); do
    read -r p _ _ <<<"$(progress)"
    awk -v p="${p:-0}" 'BEGIN { exit !(p >= 0.2) }' && break
    sleep 0.05
done
out=$(dcbus pause --config "$CFG" ticker)
check "dcbus pause answers '$out'" test "$out" == "ticker: PAUSED"
s=$(stats)
check "the broker's stats show the collector PAUSED" test "$(stat_value ticker.status "$s")" == PAUSED
sleep 0.5 # batches sent before the pause arrive
read -r p1 r1 st1 <<<"$(progress)"
rows1=$(rows)
sleep 1
read -r p2 r2 st2 <<<"$(progress)"
rows2=$(rows)
check "paused, the task stays RUNNING ($st1, $st2)" test "$st1 $st2" == "RUNNING RUNNING"
check "paused, its progress stays at $p1 (then $p2) and records at $r1 (then $r2)" \
    test "$p1 $r1" == "$p2 $r2"
check "paused, the CSV stays at $rows1 lines (then $rows2)" test "$rows1" -eq "$rows2"
check "the pause came mid-run ($r1 of $TICKS records)" test "${r1:-0}" -gt 0 -a "${r1:-0}" -lt $TICKS

out=$(dcbus resume --config "$CFG" ticker --json)
check "dcbus resume --json answers $out" test "$out" == '{"source":"ticker","status":"RUNNING"}'
wait_exit ticker 30 || die "the ticker finishes within 30 s of the resume"
check "the ticker ends by itself with exit 0" test "${STATUS[ticker]}" -eq 0
for ((i = 0; i < 50; i++)); do
    read -r p r st <<<"$(progress)"
    [[ $st == COMPLETED ]] && break
    sleep 0.1
done
check "after the resume the task completes ($st, progress $p, $r records)" \
    test "$st $p $r" == "COMPLETED 1.0 $TICKS"
sleep 0.3
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
finish
