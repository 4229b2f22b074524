# shellcheck shell=bash
# lib.sh -- what the shell integration tests share.  Source it first:
#
#     . "$(dirname "$0")/lib.sh"
#
# It gives each test a private temp dir $TMP (short, so ipc endpoints fit)
# with the bus endpoints $BUS and $TOPICS; starts the bus's processes in the
# background with their output in $TMP/<name>.log; stops every one of them
# when the test ends, however it ends (trap), and shows their logs if a
# check failed; waits only with time-outs; and keeps the pass/fail tally.
# The exactly-once checks (reference comparison, n sequence) and the stats
# request are in lib.py, run with the system Python that has zmq and msgpack.
set -uo pipefail

BUILD=${DCBUS_BUILD_DIR:?run through ctest, or set DCBUS_BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd) || exit 1 # configs and processes see it from elsewhere
BIN=$BUILD/bin
PY=/usr/bin/python3
LIB_PY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.py
TMP=$(mktemp -d /tmp/dcb.XXXXXX) # not $TMPDIR: ipc paths must stay short
BUS=ipc://$TMP/bus
TOPICS=ipc://$TMP/topics

declare -A PID=()    # name -> pid of a process still to be stopped
declare -A STATUS=() # name -> exit status of a process that ended
passed=0
failed=0

lib_cleanup() {
    local name
    for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null; done
    for name in "${!PID[@]}"; do
        wait_exit "$name" 5 || { kill -KILL "${PID[$name]}" 2>/dev/null; wait_exit "$name" 5; }
    done
    if ((failed > 0)); then show_logs; fi
    if [[ -n ${DCBUS_KEEP_TMP:-} ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap lib_cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------------------
# Checks

# ok WHAT / not_ok WHAT: one assertion's outcome, said out loud.
ok() {
    passed=$((passed + 1))
    echo "ok: $1"
}
not_ok() {
    failed=$((failed + 1))
    echo "FAIL: $1"
}

# check WHAT COMMAND...: passes if COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# finish: the tally, and the test's exit status.
# report LINES: one check per line of a checker's output ("ok: ..." or
# "FAIL: ...").
report() {
    local line
    while IFS= read -r line; do
        case $line in
        ok:*) ok "${line#ok: }" ;;
        *) not_ok "${line#FAIL: }" ;;
        esac
    done <<<"$1"
}

finish() {
    echo "$passed passed, $failed failed"
    ((failed == 0))
}

# die WHY: a failure after which the test cannot go on.
die() {
    not_ok "$1"
    exit 1
}

show_logs() {
    local log
    for log in "$TMP"/*.log; do
        [[ -e $log ]] || continue
        echo "--- $(basename "$log") (last 30 lines)"
        tail -n 30 "$log" | sed 's/^/    | /'
    done
}

# ---------------------------------------------------------------------------
# Processes

# start NAME COMMAND...: runs COMMAND in the background, output in $TMP/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$TMP/$name.log" 2>&1 &
    PID[$name]=$!
}

# broker CONFIG / worker INSTANCE CONFIG [REPLICA]: the bus's programs.  A
# replica's name (for its log and stop) is INSTANCE.REPLICA.
broker() { start broker "$BIN/dcbus-broker" --config "$1"; }
worker() {
    if (($# == 3)); then
        start "$1.$3" "$BIN/dcbus-worker" --instance "$1" --config "$2" --replica "$3"
    else
        start "$1" "$BIN/dcbus-worker" --instance "$1" --config "$2"
    fi
}

# running NAME: the process is alive (not exited, not a zombie).
running() {
    local pid=${PID[$1]:-}
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    local state
    state=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$pid/stat" 2>/dev/null)
    [[ -n $state && $state != Z ]]
}

# wait_exit NAME SECONDS: waits for it to end and reaps it (STATUS[NAME]);
# fails if it is still running after SECONDS.
wait_exit() {
    local name=$1 i
    [[ -n ${PID[$name]:-} ]] || return 0
    for ((i = 0; i < $2 * 20; i++)); do
        running "$name" || break
        sleep 0.05
    done
    running "$name" && return 1
    wait "${PID[$name]}" 2>/dev/null # no "Killed" notice: the test reports
    STATUS[$name]=$?
    unset "PID[$name]"
    return 0
}

# stop NAME: SIGTERM, SIGKILL after 15 s; returns its exit status.
stop() {
    local name=$1
    if [[ -n ${PID[$name]:-} ]]; then
        kill -TERM "${PID[$name]}" 2>/dev/null
        if ! wait_exit "$name" 15; then
            echo "$name did not stop in 15 s on SIGTERM: killed"
            kill -KILL "${PID[$name]}" 2>/dev/null
            wait_exit "$name" 5
        fi
    fi
    return "${STATUS[$name]:-255}"
}

# wait_for FILE REGEX SECONDS: until a line of FILE matches.
wait_for() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# now: seconds since the epoch, with fractions; seconds_since T0: elapsed.
now() { date +%s.%N; }
seconds_since() { awk -v t0="$1" -v t1="$(now)" 'BEGIN { printf "%.1f", t1 - t0 }'; }

# wait_joined INSTANCE [REPLICA]: the broker logged the worker joining.
wait_joined() {
    wait_for "$TMP/broker.log" "msg=\"worker joined\" instance=$1 replica=${2:-0} " 10
}

# stalled_sink_bus CONFIG: the broker, csv and validate of CONFIG, then the
# csv sink stopped (SIGSTOP), then the ticker: a bus whose sink takes
# nothing until `kill -CONT "${PID[csv]}"`.
stalled_sink_bus() {
    broker "$1"
    worker csv "$1"
    worker validate "$1"
    wait_joined csv && wait_joined validate || die "the sink and the processor join the broker"
    kill -STOP "${PID[csv]}"
    worker ticker "$1"
    wait_joined ticker || die "the ticker joins the broker"
}

# ---------------------------------------------------------------------------
# Configs and results

# config_head: the broker and plugins_path lines of a config for this test.
config_head() {
    printf 'broker: {bus: %s, topics: %s, heartbeat_ms: 200, spool: %s/spool}\nplugins_path: [%s]\n' \
        "$BUS" "$TOPICS" "$TMP" "$BUILD/plugins"
}

# stats: the broker's counters, "key value" a line (see lib.py).
stats() { "$PY" "$LIB_PY" stats "$BUS"; }

# stat_value KEY STATS_TEXT: one value of a stats dump.
stat_value() { awk -v k="$1" '$1 == k { print $2 }' <<<"$2"; }

# wait_delivered SECONDS: until the broker has delivered every batch it took
# to every sink (its stats say batches_in_flight 0: nothing left in memory or
# in its spool); fails after SECONDS.  A collector now ends once the broker
# has spooled its batches, so a test that checks what the sinks stored waits
# for this after the collector's exit.  Sets IN_FLIGHT to the last value read
# (empty if the broker never answered), for the caller's message.
IN_FLIGHT=""
wait_delivered() {
    local deadline s
    deadline=$(($(date +%s%N) + $1 * 1000000000))
    IN_FLIGHT=""
    while :; do
        if s=$(stats 2>/dev/null); then
            IN_FLIGHT=$(stat_value batches_in_flight "$s")
            [[ $IN_FLIGHT == 0 ]] && return 0
        fi
        (($(date +%s%N) < deadline)) || return 1
        sleep 0.1
    done
}

# check_delivered SECONDS WHAT: a check that wait_delivered SECONDS succeeds,
# saying how long it took (or how many batches were left).
check_delivered() {
    local t0
    t0=$(now)
    if wait_delivered "$1"; then
        ok "$2 (nothing in flight after $(seconds_since "$t0") s)"
    elif [[ -n $IN_FLIGHT ]]; then
        not_ok "$2 ($IN_FLIGHT batches still in flight after $1 s)"
    else
        not_ok "$2 (the broker did not answer the stats request for $1 s)"
    fi
}

# reference CONFIG: the pipelines run in one process, into the sessions dir
# "reference" next to the bus's (see tests/tools/reference.c).
reference() { "$BIN/dcbus-reference" --config "$1" >"$TMP/reference.log" 2>&1; }

# same_as_reference CSV_DIR: every stream file of the bus's session is byte
# for byte the reference's; one check per file.
same_as_reference() {
    local out rc line
    out=$("$PY" "$LIB_PY" compare "$1")
    rc=$?
    while IFS= read -r line; do
        case $line in
        *identical*) ok "$line" ;;
        *) not_ok "$line" ;;
        esac
    done <<<"$out"
    return $rc
}

# exactly_once CSV_FILE ROWS: n is 0..ROWS-1, in order, each once.
exactly_once() {
    local out
    if out=$("$PY" "$LIB_PY" check-n "$1" ${2:+"$2"}); then ok "$out"; else not_ok "$out"; fi
}

# session_file CSV_DIR STREAM: the bus session's file of STREAM.
session_file() {
    local f
    for f in "$1"/*/"$2.csv"; do
        [[ $f == "$1/reference/"* ]] || { echo "$f"; return; }
    done
}

# ticks_config FILE TICKS [TICKER_SETTINGS [VALIDATE_SETTINGS]]: writes the
# pipeline most tests run: ticker (two symbols, fixed seed and start) ->
# json-validate -> csv into $TMP/csv.  The extra settings are YAML flow map
# entries, e.g. "rate: 100000" or "replicas: 2".  A tick makes an order-book
# snapshot every 10 ticks of its symbol: TICKS/10 records on that stream.
ticks_config() {
    local file=$1 ticks=$2 ticker=${3:-} validate=${4:-}
    {
        config_head
        cat <<YAML
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $ticks, seed: 7,
           start_ts: 1700000000000000${ticker:+, $ticker}}
  validate: {plugin: json-validate, required: [symbol, ts, n],
             types: {symbol: string, ts: int, n: int}${validate:+, $validate}}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, through: [validate], to: [csv]}
YAML
    } >"$file"
}
