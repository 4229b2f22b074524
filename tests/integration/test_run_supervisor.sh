#!/usr/bin/env bash
# test_run_supervisor.sh -- `dcbus run` as a supervisor, with the real
# broker and workers and the mock plugins:
#
#   1. a sink killed with SIGKILL mid-run is restarted, the run still
#      completes on its own (exit 0) and every record reaches the sink;
#   2. SIGTERM stops the children in order (collector, processor, sink,
#      broker), each with SIGTERM, leaving no process behind (exit 0);
#   3. a child that keeps failing makes the run give up with exit 1;
#   4. a child refused for good (dcbus-worker exit 2) ends the run at once
#      with exit 3, not restarted;
# and, while the bus of 2 runs, `dcbus stats` reads its counters.
set -uo pipefail

BUILD=${DCBUS_BUILD_DIR:?run through ctest, or set DCBUS_BUILD_DIR}
DCBUS=$BUILD/bin/dcbus
TMP=$(mktemp -d)
runpid=""
cleanup() {
    [[ -n "$runpid" ]] && kill -KILL "$runpid" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
cd "$TMP" || exit 1 # run/ (ipc endpoints) and data/ (spool) land here

passed=0
failed=0

check() { # check WHAT COMMAND...: one assertion
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $what"
    fi
}

show_logs() { # on failure, what dcbus run said
    echo "--- stdout of dcbus run:"
    sed 's/^/    | /' "$1.out"
    echo "--- stderr of dcbus run (last 60 lines):"
    tail -n 60 "$1.err" | sed 's/^/    | /'
}

# wait_for FILE REGEX SECONDS: until a line of FILE matches.
wait_for() {
    local file=$1 regex=$2 seconds=$3 i
    for ((i = 0; i < seconds * 10; i++)); do
        grep -Eq -- "$regex" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# pid_of LOG INSTANCE: the pid dcbus run last logged for a started child.
pid_of() {
    grep -E "msg=\"child (started|restarted)\" instance=$2( |$)" "$1" | tail -n 1 |
        sed -E 's/.* pid=([0-9]+).*/\1/'
}

# line_of LOG REGEX: the number of the first line matching, or 999999.
line_of() {
    local n
    n=$(grep -nE -- "$2" "$1" | head -n 1 | cut -d: -f1)
    echo "${n:-999999}"
}

# distinct_records FILE: how many distinct n the mock sink wrote.
distinct_records() {
    cut -d, -f3 "$1" | sort -u | grep -c .
}

config() { # config NAME RECORDS SINK_DELAY_MS: source -> processor -> sink
    cat >"$TMP/$1.yaml" <<YAML
broker:
  bus: ipc://run/$1-bus
  topics: ipc://run/$1-topics
  spool: data/$1-spool
plugins_path: [$BUILD/plugins]
workers:
  src: {plugin: mock-source, records: $2, batch: 10}
  proc: {plugin: mock-processor, mode: pass}
  sink: {plugin: mock-storage, file: $TMP/$1.sink, delay_ms: $3}
pipelines:
  p: {from: src, through: [proc], to: [sink]}
YAML
}

# --- 1. a killed sink is restarted and the run completes ---------------------
records=3000
config crash "$records" 20 # 300 batches at 20 ms each: about 6 s of sink work
"$DCBUS" run --stop-timeout 20 crash.yaml >crash.out 2>crash.err &
runpid=$!
ok=true
wait_for crash.sink . 30 || ok=false # data is flowing
sink=$(pid_of crash.err sink)
check "the sink is running" [ -n "$sink" ]
[[ -n "$sink" ]] && kill -KILL "$sink"
check "the killed sink's failure is logged" wait_for crash.err \
    "msg=\"child failed; restarting\" instance=sink replica=0 signal=KILL" 10
check "the sink is restarted" wait_for crash.err "msg=\"child restarted\" instance=sink" 10
for ((i = 0; i < 1200; i++)); do # up to 120 s
    kill -0 "$runpid" 2>/dev/null || break
    sleep 0.1
done
wait "$runpid"
rc=$?
runpid=""
check "the run ends by itself with status 0 (got $rc)" [ "$rc" -eq 0 ]
check "it ends because the collector finished" grep -q "(every collector finished)" crash.out
got=$(distinct_records crash.sink)
check "every record reached the sink ($got of $records distinct)" [ "$got" -eq "$records" ]
check "the summary names where the data went" grep -Eq "^  sink +file +$TMP/crash.sink$" crash.out
check "the summary has a line per instance" \
    bash -c "grep -Eq '^  src +collector ' crash.out && grep -Eq '^  proc +processor ' crash.out"
[[ $failed -gt 0 ]] && show_logs crash

# --- 2. ordered stop on SIGTERM -----------------------------------------------
before=$failed
config stop 100000000 1 # would run for hours
"$DCBUS" run stop.yaml >stop.out 2>stop.err &
runpid=$!
check "data flows" wait_for stop.sink . 30
pids=$(grep -E 'msg="child started"' stop.err | sed -E 's/.* pid=([0-9]+).*/\1/')
"$DCBUS" stats --config stop.yaml >stats.txt 2>&1
check "dcbus stats answers" [ $? -eq 0 ]
check "dcbus stats prints a row per instance" bash -c \
    "grep -Eq '^src +collector +1 ' stats.txt && grep -Eq '^proc +processor +1 ' stats.txt &&
     grep -Eq '^sink +storage +1 ' stats.txt"
"$DCBUS" stats --broker ipc://run/stop-bus --json >stats.json 2>&1
check "dcbus stats --json gives the instances, roles and counters" /usr/bin/python3 -c '
import json, sys
doc = json.load(open("stats.json"))
roles = {i["instance"]: i["role"] for i in doc["instances"]}
assert roles == {"src": "collector", "proc": "processor", "sink": "storage"}, roles
src = [i for i in doc["instances"] if i["instance"] == "src"][0]
assert src["records_out"] > 0 and doc["uptime_s"] > 0, doc
'
kill -TERM "$runpid"
for ((i = 0; i < 600; i++)); do
    kill -0 "$runpid" 2>/dev/null || break
    sleep 0.1
done
wait "$runpid"
rc=$?
runpid=""
check "a requested stop exits 0 (got $rc)" [ "$rc" -eq 0 ]
check "it says why it stopped" grep -q "(stop requested)" stop.out
src_stopped=$(line_of stop.err 'msg="child stopped" instance=src ')
proc_stopping=$(line_of stop.err 'msg="stopping child" instance=proc ')
proc_stopped=$(line_of stop.err 'msg="child stopped" instance=proc ')
sink_stopping=$(line_of stop.err 'msg="stopping child" instance=sink ')
sink_stopped=$(line_of stop.err 'msg="child stopped" instance=sink ')
broker_stopping=$(line_of stop.err 'msg="stopping child" instance=broker')
broker_stopped=$(line_of stop.err 'msg="child stopped" instance=broker')
check "every child stopped cleanly" [ "$broker_stopped" -lt 999999 ]
check "the collector stops before the processor is asked to" [ "$src_stopped" -lt "$proc_stopping" ]
check "the processor stops before the sink is asked to" [ "$proc_stopped" -lt "$sink_stopping" ]
check "the sink stops before the broker is asked to" [ "$sink_stopped" -lt "$broker_stopping" ]
check "nothing was killed" bash -c "! grep -q 'killing' stop.err"
left=""
for pid in $pids; do
    kill -0 "$pid" 2>/dev/null && left="$left $pid"
done
check "no child is left running (left:$left)" [ -z "$left" ]
[[ $failed -gt $before ]] && show_logs stop && cat stats.txt stats.json

# --- 3. a child that keeps failing --------------------------------------------
before=$failed
config fail 100 0
sed -i "s|proc: {plugin: mock-processor, mode: pass}|proc: {plugin: mock-processor, mode: pass, fault: abort}|" \
    fail.yaml # every batch kills it
"$DCBUS" run --max-failures 2 fail.yaml >fail.out 2>fail.err
rc=$?
check "giving up exits 1 (got $rc)" [ "$rc" -eq 1 ]
check "giving up is logged" grep -q 'msg="child keeps failing; giving up" instance=proc' fail.err
[[ $failed -gt $before ]] && show_logs fail

# --- 4. a child refused for good (its open() fails: exit 2) is not restarted --
before=$failed
config refused 10 0
sed -i "s|file: $TMP/refused.sink|file: $TMP/no/such/dir/refused.sink|" refused.yaml
"$DCBUS" run --max-failures 5 refused.yaml >refused.out 2>refused.err
rc=$?
check "a worker refused for good exits 3 (got $rc)" [ "$rc" -eq 3 ]
check "it is not restarted" [ "$(grep -c 'msg="child restarted" instance=sink' refused.err)" -eq 0 ]
check "the refusal is said" grep -q '^dcbus run: not restarted, refused for good: instance=sink' \
    refused.err
[[ $failed -gt $before ]] && show_logs refused

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
