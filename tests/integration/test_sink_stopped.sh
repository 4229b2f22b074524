#!/usr/bin/env bash
# test_sink_stopped.sh -- the spool, not memory, absorbs a stalled sink.
# The csv sink is stopped (SIGSTOP) for 30 s while the ticker runs at full
# rate through json-validate.  It checks that
#   - the collector keeps producing while the sink is stopped (its batches
#     are acknowledged once spooled);
#   - the broker's spool grows on disk meanwhile;
#   - the peak RSS of the broker and of the collector (printed) stays under
#     100 MB;
#   - after SIGCONT everything arrives: n is 0..N-1 once each on both
#     streams.
. "$(dirname "$0")/lib.sh"

STOP_S=30
LIMIT_KB=$((100 * 1024))

spool_kb() { du -sk "$TMP/spool/spool" | awk '{ print $1 }'; }
peak_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/${PID[$1]}/status"; }
records_out() { stat_value ticker.records_out "$(stats)"; }
rows() { tail -n +2 "$1" | wc -l; }

# An endless ticker (limit 0): it runs at full rate until it is stopped.
ticks_config "$TMP/bus.yaml" 0
# Room for 30 s at full rate (about 4 GB here): the limit is not what is tested.
sed -i "1s/}$/, spool_max_mb: 16384}/" "$TMP/bus.yaml"
stalled_sink_bus "$TMP/bus.yaml"
sleep 2
spool0=$(spool_kb)
out0=$(records_out)
sleep $((STOP_S - 2))
spool1=$(spool_kb)
out1=$(records_out)
running ticker || die "the ticker is still running after ${STOP_S} s"
check "the collector kept producing while the sink was stopped ($out0 -> $out1 records)" \
    test "$out1" -gt $((out0 + 1000000))
check "the spool grew on disk while the sink was stopped (${spool0} KB -> ${spool1} KB)" \
    test "$spool1" -gt $((spool0 + 100 * 1024))
broker_peak=$(peak_kb broker)
ticker_peak=$(peak_kb ticker)
echo "peak RSS after ${STOP_S} s with the sink stopped: broker ${broker_peak} KB, collector ${ticker_peak} KB"
check "the broker's peak RSS stays under 100 MB (${broker_peak} KB)" test "$broker_peak" -lt $LIMIT_KB
check "the collector's peak RSS stays under 100 MB (${ticker_peak} KB)" test "$ticker_peak" -lt $LIMIT_KB

kill -CONT "${PID[csv]}"
stop ticker
check "the ticker stops on SIGTERM with exit 0" test "${STATUS[ticker]}" -eq 0
wait_delivered 300 || die "the broker delivers everything after SIGCONT (in flight: $IN_FLIGHT)"
total=$(records_out)
broker_peak=$(peak_kb broker)
echo "peak RSS at the end: broker ${broker_peak} KB; ${total} records sent"
check "the broker's peak RSS stays under 100 MB to the end (${broker_peak} KB)" \
    test "$broker_peak" -lt $LIMIT_KB
stop csv
prices=$(session_file "$TMP/csv" prices)
books=$(session_file "$TMP/csv" orderbook)
exactly_once "$prices"
exactly_once "$books"
stored=$(($(rows "$prices") + $(rows "$books")))
check "every record sent was stored ($stored of $total)" test "$stored" -eq "$total"
finish
