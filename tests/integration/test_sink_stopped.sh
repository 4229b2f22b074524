#!/usr/bin/env bash
# test_sink_stopped.sh -- the spool, not memory, absorbs a stalled sink.
# The csv sink is stopped (SIGSTOP) for 30 s while the ticker runs at full
# rate (unpaced) through json-validate.  It checks that
#   - the collector keeps producing while the sink is stopped (its batches
#     are acknowledged once spooled);
#   - the broker's spool grows on disk meanwhile;
#   - the peak RSS of the broker and of the collector (printed) stays under
#     100 MB;
#   - after SIGCONT everything arrives: n is 0..N-1 once each on both
#     streams, and the rows add up to what the collector sent.
# At full rate the broker spools about 3 M records a second here, 10 GB in
# 30 s, and checking 100 M rows takes minutes; so the suite gives the spool
# DCBUS_STALL_SPOOL_MB=1024 (filled in a few seconds, then the collector is
# held back by `spool_full: block`, memory still bounded).  Set it to 32768
# to keep the collector at full rate for the whole 30 s (figures in
# docs/performance.md).
. "$(dirname "$0")/lib.sh"

STOP_S=30
LIMIT_KB=$((100 * 1024))

spool_kb() { du -sk "$TMP/spool/spool" | awk '{ print $1 }'; }
peak_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/${PID[$1]}/status"; }
records_out() { stat_value ticker.records_out "$(stats)"; }
rows() { tail -n +2 "$1" | wc -l; }

# An endless ticker (limit 0): it runs at full rate until it is stopped.
ticks_config "$TMP/bus.yaml" 0
SPOOL_MB=${DCBUS_STALL_SPOOL_MB:-1024}
sed -i "1s/}$/, spool_max_mb: $SPOOL_MB}/" "$TMP/bus.yaml"
stalled_sink_bus "$TMP/bus.yaml"
# Sampled at once: at full rate the 1 GB spool fills within seconds here,
# so a later first sample can find it full already.
spool0=$(spool_kb)
out0=$(records_out)
sleep "$STOP_S"
spool1=$(spool_kb)
out1=$(records_out)
echo "in ${STOP_S} s with the sink stopped: $out1 records taken, spool ${spool1} KB (limit ${SPOOL_MB} MB)"
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
