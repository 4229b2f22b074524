#!/usr/bin/env bash
# test_run_restart_finished.sh -- `dcbus run` started again continues the
# collectors' runs the broker's spool has, and begins a new one only when
# asked (--new-run).  ticker -> json-validate -> csv:
#
#   1. `dcbus run` whose ticker finished while the csv sink is stopped
#      (SIGSTOP: the run waits for the sinks to drain) is killed with
#      SIGKILL, and started again with the same config: it says it
#      continues the run, delivers what was in flight, collects nothing
#      again, and ends with exit 0: every record is in the CSV once;
#   2. started again after that completed run, it collects nothing new,
#      says so, and ends with exit 0;
#   3. `dcbus run --new-run` collects a new run: its rows are in a session
#      of their own, every record once; the first run's rows are untouched.
. "$(dirname "$0")/lib.sh"

TICKS=100000
ticks_config "$TMP/bus.yaml" $TICKS "rate: 200000"

# pid_of LOG INSTANCE: the pid `dcbus run` last logged for a started child.
pid_of() {
    grep -E "msg=\"child (started|restarted)\" instance=$2( |$)" "$1" | tail -n 1 |
        sed -E 's/.* pid=([0-9]+).*/\1/'
}
# gone PID SECONDS: until the process is no more (or a zombie, its parent
# being dead).
gone() {
    local i state
    for ((i = 0; i < $2 * 20; i++)); do
        state=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null)
        [[ -z $state || $state == Z ]] && return 0
        sleep 0.05
    done
    return 1
}
sessions() { find "$TMP/csv" -mindepth 1 -maxdepth 1 -type d | sort; }
# all_rows STREAM: the stream's rows of every session, oldest first, under
# one header.
all_rows() {
    local f first=1
    for f in $(sessions); do
        [[ -e $f/$1.csv ]] || continue
        if ((first)); then cat "$f/$1.csv"; else tail -n +2 "$f/$1.csv"; fi
        first=0
    done
}
run_bus() { # run_bus NAME [OPTIONS...]: dcbus run in the background
    local name=$1
    shift
    start "$name" "$BIN/dcbus" run "$@" "$TMP/bus.yaml"
}

# --- 1. killed while draining, started again ---------------------------------
run_bus run1
wait_for "$TMP/run1.log" 'msg="child started" instance=csv ' 10 || die "dcbus run starts the sink"
csv_pid=$(pid_of "$TMP/run1.log" csv)
kill -STOP "$csv_pid"
wait_for "$TMP/run1.log" 'msg="child finished" instance=ticker' 60 ||
    die "the ticker finishes its source while the sink is stopped"
wait_for "$TMP/run1.log" 'waiting for the sinks to have everything' 10 ||
    die "dcbus run waits for the sinks"
broker_pid=$(pid_of "$TMP/run1.log" broker)
validate_pid=$(pid_of "$TMP/run1.log" validate)
kill -KILL "${PID[run1]}"
wait_exit run1 5
kill -KILL "$csv_pid" # stopped: it cannot act on its pending SIGTERM
gone "$broker_pid" 20 && gone "$validate_pid" 20 && gone "$csv_pid" 5 ||
    die "the first run's children end with it"

run_bus run2
wait_exit run2 60 || die "dcbus run started again ends by itself"
check "started again, dcbus run ends with exit 0 (${STATUS[run2]})" test "${STATUS[run2]}" -eq 0
check "it says it continues the run" \
    grep -qE '^dcbus run: ticker: continuing run ticker-[0-9]+: its source was collected to the end' \
    "$TMP/run2.log"
check "its ticker collected nothing" \
    test "$(grep -c '"source exhausted"' "$TMP/run2.log")" -eq 0
all_rows prices >"$TMP/prices.csv"
all_rows orderbook >"$TMP/orderbook.csv"
exactly_once "$TMP/prices.csv" $TICKS
exactly_once "$TMP/orderbook.csv" $((TICKS / 10))
mapfile -t first < <(sessions)

# --- 2. a completed run, started again ---------------------------------------
run_bus run3
wait_exit run3 30 || die "dcbus run after a completed run ends by itself"
check "after a completed run, dcbus run ends with exit 0 (${STATUS[run3]})" \
    test "${STATUS[run3]}" -eq 0
check "it says there is nothing new to collect" \
    grep -qE '^dcbus run: ticker: continuing run ticker-[0-9]+: .*nothing new to collect \(dcbus run --new-run' \
    "$TMP/run3.log"
mapfile -t now < <(sessions)
check "no new session, no new rows" test "${now[*]}" == "${first[*]}"
all_rows prices >"$TMP/prices3.csv"
check "the CSV is as it was" cmp -s "$TMP/prices.csv" "$TMP/prices3.csv"

# --- 3. --new-run ------------------------------------------------------------
run_bus run4 --new-run
wait_exit run4 60 || die "dcbus run --new-run ends by itself"
check "dcbus run --new-run ends with exit 0 (${STATUS[run4]})" test "${STATUS[run4]}" -eq 0
check "it says it starts a new run" \
    grep -qE '^dcbus run: ticker: starting new run ticker-[0-9]+$' "$TMP/run4.log"
mapfile -t now < <(sessions)
check "the new run is a session of its own (${#first[@]} then ${#now[@]} sessions)" \
    test ${#now[@]} -eq $((${#first[@]} + 1))
newest=${now[${#now[@]} - 1]}
exactly_once "$newest/prices.csv" $TICKS
exactly_once "$newest/orderbook.csv" $((TICKS / 10))
all_rows prices | head -n $((TICKS + 1)) >"$TMP/prices4.csv"
check "the first run's rows are untouched" cmp -s "$TMP/prices.csv" "$TMP/prices4.csv"
finish
