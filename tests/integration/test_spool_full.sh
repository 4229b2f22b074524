#!/usr/bin/env bash
# test_spool_full.sh -- at its size limit the spool holds collectors back
# (spool_full: block) and loses nothing.  With the csv sink stopped
# (SIGSTOP) and a 2 MiB spool, the ticker's batches fill the spool; it
# checks that
#   - the broker says the spool is full and holds batches back;
#   - the collector stops producing (its window is not acknowledged) while
#     the spool stays at its limit;
#   - after SIGCONT every record arrives, exactly once, and the spool
#     empties.
. "$(dirname "$0")/lib.sh"

TICKS=300000
BOOKS=$((TICKS / 10))

ticks_config "$TMP/bus.yaml" $TICKS
sed -i "1s/}$/, spool_max_mb: 2, spool_segment_mb: 1}/" "$TMP/bus.yaml"
stalled_sink_bus "$TMP/bus.yaml"

full=""
for ((i = 0; i < 100; i++)); do
    s=$(stats)
    [[ $(stat_value spool.full "$s") == True ]] && { full=yes; break; }
    sleep 0.1
done
check "the broker reports the spool full" test -n "$full"
check "it holds batches back ($(stat_value spool.held "$s"))" test "$(stat_value spool.held "$s")" -gt 0
out1=$(stat_value ticker.records_out "$(stats)")
sleep 2
s=$(stats)
out2=$(stat_value ticker.records_out "$s")
check "the collector is held back: $out1 then $out2 records taken in 2 s" test "$out2" -eq "$out1"
kb=$(du -sk "$TMP/spool/spool" | awk '{ print $1 }')
check "the spool stays near its 2 MiB limit (${kb} KB)" test "$kb" -le 3072
check "the collector is still running, waiting" running ticker

kill -CONT "${PID[csv]}"
wait_exit ticker 120 || die "the ticker finishes once the sink is back"
check "the ticker ends with exit 0" test "${STATUS[ticker]}" -eq 0
wait_delivered 120 || die "the broker delivers everything (in flight: $IN_FLIGHT)"
s=$(stats)
check "the spool is empty at the end" test "$(stat_value spool.batches "$s")" -eq 0
check "nothing was dropped" test "$(stat_value spool.dropped "$s")" -eq 0
stop csv
exactly_once "$(session_file "$TMP/csv" prices)" $TICKS
exactly_once "$(session_file "$TMP/csv" orderbook)" $BOOKS
finish
