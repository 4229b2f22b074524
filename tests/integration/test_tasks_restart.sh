#!/usr/bin/env bash
# test_tasks_restart.sh -- the task table outlasts the broker.
#
# Two collectors on one broker, each with its own pipeline to a csv sink:
#   ticker: 20,000 ticks as fast as it can, run to completion first;
#   slow:   30,000 ticks at 5,000 a second (6 s), still running when the
#           broker is killed.
# It checks that
#   - after the ticker's run completes, a broker stopped with SIGTERM and
#     started again lists (`dcbus tasks --json`) the run's two tasks as
#     before: COMPLETED, progress 1, the same counts and times;
#   - a broker killed with SIGKILL in the middle of the slow run and
#     started again still lists the completed tasks, and the slow run
#     carries on under the same task ids (no second collection task for
#     it): its progress does not go back, and it ends COMPLETED with
#     progress 1 and every record counted, while the collector itself
#     never restarted.
. "$(dirname "$0")/lib.sh"

TICKS=20000
SLOW_TICKS=30000
CFG=$TMP/bus.yaml

{
    printf 'broker: {bus: %s, topics: %s, spool: %s, heartbeat_ms: 200}\n' \
        "$BUS" "$TOPICS" "$TMP/spool"
    printf 'plugins_path: [%s]\n' "$BUILD/plugins"
    cat <<YAML
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $TICKS, seed: 1}
  slow: {plugin: ticker, symbols: [SOL_USDT], limit: $SLOW_TICKS, rate: 5000, batch: 250,
         stream_prefix: slow_, seed: 2}
  csv: {plugin: csv, dir: $TMP/csv}
  csv2: {plugin: csv, dir: $TMP/csv2}
pipelines:
  ticks: {from: ticker, to: [csv]}
  slowticks: {from: slow, to: [csv2]}
YAML
} >"$CFG"

# tasks FILE: `dcbus tasks --json` into FILE.
tasks() { "$BIN/dcbus" tasks --config "$CFG" --json >"$1" 2>>"$TMP/tasks.err"; }

# task FILE PATTERN FIELD: FIELD of the task whose id matches PATTERN in full
# (the ids joined by spaces if several, nothing if none).
task() {
    "$PY" - "$@" <<'PY'
import json, re, sys
tasks = json.load(open(sys.argv[1]))["tasks"]
print(" ".join(str(t[sys.argv[3]]) for t in tasks if re.fullmatch(sys.argv[2], t["id"])))
PY
}

# wait_task PATTERN STATUS SECONDS: until the task shows STATUS.
wait_task() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        tasks "$TMP/poll.json" && [[ $(task "$TMP/poll.json" "$1" status) == "$2" ]] && return 0
        sleep 0.1
    done
    return 1
}

broker "$CFG"
worker csv "$CFG"
worker csv2 "$CFG"
wait_joined csv && wait_joined csv2 || die "the sinks join the broker"

# --- a completed run, then a clean restart ----------------------------------
worker ticker "$CFG"
wait_exit ticker 60 || die "the ticker finishes within 60 s"
wait_task 'ticker-[0-9]+/ticks' COMPLETED 10 || die "the ticker's pipeline task completes"
tasks "$TMP/before.json" || die "dcbus tasks --json answers"
run=$(task "$TMP/before.json" 'ticker-[0-9]+' id)
check "the ticker's run is one collection task ($run)" test "$(wc -w <<<"$run")" -eq 1

stop broker
check "the broker stops on SIGTERM with exit 0" test "${STATUS[broker]}" -eq 0
start broker2 "$BIN/dcbus-broker" --config "$CFG"
wait_for "$TMP/broker2.log" 'msg="broker listening"' 10 || die "the broker starts again"
tasks "$TMP/after.json" || die "dcbus tasks --json answers after the restart"
for id in "$run" "$run/ticks"; do
    for field in status progress records type name created started finished; do
        before=$(task "$TMP/before.json" "$id" $field)
        after=$(task "$TMP/after.json" "$id" $field)
        check "after a SIGTERM restart, $id keeps $field = $before" \
            test -n "$before" -a "$before" == "$after"
    done
done
check "the restored run was COMPLETED with progress 1.0" \
    test "$(task "$TMP/after.json" "$run" status) $(task "$TMP/after.json" "$run" progress)" \
    == "COMPLETED 1.0"

# --- a run in progress, the broker killed with SIGKILL -----------------------
wait_joined csv && wait_joined csv2 || die "the sinks join the restarted broker"
worker slow "$CFG"
progress=0
for ((i = 0; i < 100; i++)); do
    tasks "$TMP/poll.json" && progress=$(task "$TMP/poll.json" 'slow-[0-9]+' progress)
    awk -v p="${progress:-0}" 'BEGIN { exit !(p >= 0.2) }' && break
    sleep 0.1
done
tasks "$TMP/killed.json"
slow_run=$(task "$TMP/killed.json" 'slow-[0-9]+' id)
killed_at=$(task "$TMP/killed.json" 'slow-[0-9]+' progress)
check "the slow run is RUNNING when the broker is killed (progress $killed_at)" \
    test "$(task "$TMP/killed.json" 'slow-[0-9]+' status)" == RUNNING
sleep 1.2 # progress is written to disk about once a second
kill -KILL "${PID[broker2]}"
wait_exit broker2 5
check "the broker is killed with SIGKILL" test "${STATUS[broker2]}" -eq 137
tasks "$TMP/tasks_down.json"
check "nobody answers while the broker is down" test $? -ne 0

start broker3 "$BIN/dcbus-broker" --config "$CFG"
wait_for "$TMP/broker3.log" 'msg="worker joined" instance=slow ' 10 ||
    not_ok "the slow collector registers again with the new broker"
tasks "$TMP/resumed.json" || die "dcbus tasks --json answers after the kill"
resumed=$(task "$TMP/resumed.json" 'slow-[0-9]+' progress)
check "the killed broker's table still has the slow run, at progress $resumed (not below the $killed_at seen before)" \
    awk -v a="${resumed:-0}" -v b="${killed_at:-1}" 'BEGIN { exit !(a >= b && a > 0) }'
wait_exit slow 60 || die "the slow collector finishes within 60 s"
check "the slow collector ends by itself with exit 0" test "${STATUS[slow]}" -eq 0
check "the slow collector reconnected, it was not restarted" \
    test "$(grep -c 'msg="plugin loaded"' "$TMP/slow.log")" -eq 1 -a \
    "$(grep -c 'msg="reconnecting to the broker"' "$TMP/slow.log")" -ge 1
wait_task 'slow-[0-9]+/slowticks' COMPLETED 15 || not_ok "the slow run's pipeline task completes"

tasks "$TMP/final.json" || die "dcbus tasks --json answers at the end"
ids=$(task "$TMP/final.json" 'slow-[0-9]+' id)
check "the slow run carried on under its task id: one collection task ($ids)" \
    test "$ids" == "$slow_run"
total=$((SLOW_TICKS + SLOW_TICKS / 10))
for id in "$slow_run" "$slow_run/slowticks"; do
    got="$(task "$TMP/final.json" "$id" status) $(task "$TMP/final.json" "$id" progress)"
    check "$id ends COMPLETED with progress 1.0 ($got)" test "$got" == "COMPLETED 1.0"
    got=$(task "$TMP/final.json" "$id" records)
    check "$id counts all $total records ($got)" test "$got" == "$total"
done
for id in "$run" "$run/ticks"; do
    check "after the SIGKILL restart, $id is still COMPLETED" \
        test "$(task "$TMP/final.json" "$id" status)" == COMPLETED
done
finish
