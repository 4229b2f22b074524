#!/usr/bin/env bash
# test_signal_storm.sh -- signals during receives lose nothing.
#
# A stopped and continued process sees its poll() and blocking receives
# fail with EINTR (signal(7)), whatever its handlers.  While ticker ->
# json-validate -> csv moves 200,000 ticks (paced: about 4 s), every process of the bus is
# stopped and continued (SIGSTOP, SIGCONT) again and again, each time in
# the middle of whatever it was doing.  Afterwards every record is in the
# CSV exactly once, the broker counted no malformed message (an interrupted
# receive is not one), and no process has died.
. "$(dirname "$0")/lib.sh"

TICKS=200000
ticks_config "$TMP/bus.yaml" $TICKS "rate: 50000" # about 4 s of data flow
broker "$TMP/bus.yaml"
worker csv "$TMP/bus.yaml"
worker validate "$TMP/bus.yaml"
wait_joined csv && wait_joined validate || die "the sink and the processor join"
worker ticker "$TMP/bus.yaml"
wait_joined ticker || die "the ticker joins"

storms=0
for ((round = 0; round < 100; round++)); do
    for name in broker validate csv ticker; do
        pid=${PID[$name]:-}
        [[ -n $pid ]] || continue
        kill -STOP "$pid" 2>/dev/null && kill -CONT "$pid" 2>/dev/null && storms=$((storms + 1))
    done
    sleep 0.01
done
echo "stopped and continued a process $storms times"
check "every round stopped and continued the broker, the processor and the sink ($storms times)" \
    test $storms -ge 300
wait_exit ticker 120 || die "the ticker finishes"
check "the ticker ends with exit 0" test "${STATUS[ticker]}" -eq 0
check_delivered 60 "the broker delivers every batch"
s=$(stats) || die "the broker answers the stats request"
check "no message counted malformed ($(stat_value malformed "$s"))" test "$(stat_value malformed "$s")" -eq 0
for name in broker validate csv; do
    check "$name is still running" running $name
done
stop csv
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
exactly_once "$(session_file "$TMP/csv" orderbook)" $((TICKS / 10))
finish
