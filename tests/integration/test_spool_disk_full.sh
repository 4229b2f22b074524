#!/usr/bin/env bash
# test_spool_disk_full.sh -- a full disk does not stop the pipeline for
# good.  The spool lives on a 20 MiB tmpfs with the default 64 MiB segments
# and 4 GiB limit, so the file system, not the limit, runs out:
#   1. the csv sink stopped (SIGSTOP) until the ticker's batches fill the
#      tmpfs: the broker says it has no space (once, with what it needs),
#      holds the collector back and keeps answering; after SIGCONT every
#      record arrives exactly once and the spool empties, without a
#      restart;
#   2. another file fills the tmpfs while the bus runs: the collector is
#      held back; once the file is deleted it goes on and every record
#      arrives exactly once.
# Mounting needs root; without it the test says so and passes as skipped.
. "$(dirname "$0")/lib.sh"

MNT=$(mktemp -d /tmp/dcb-tmpfs.XXXXXX)
if ! mount -t tmpfs -o size=20m tmpfs "$MNT" 2>/dev/null; then
    rmdir "$MNT"
    echo "SKIPPED: cannot mount a tmpfs here (needs root)"
    exit 0
fi
trap 'lib_cleanup; umount "$MNT"; rmdir "$MNT"' EXIT

TICKS=600000
BOOKS=$((TICKS / 10))

# disk_config FILE CASE: the test pipeline, its spool on the tmpfs.
disk_config() {
    ticks_config "$1" $TICKS
    sed -i "1s|spool: [^,}]*|spool: $MNT/$2|" "$1"
    sed -i "s|dir: $TMP/csv|dir: $TMP/csv-$2|" "$1"
}

# wait_nospace: until the broker reports the spool out of disk space.
wait_nospace() {
    local i s
    for ((i = 0; i < 300; i++)); do
        s=$(stats) && [[ $(stat_value spool.nospace "$s") -gt 0 && $(stat_value spool.held "$s") -gt 0 ]] &&
            return 0
        sleep 0.1
    done
    return 1
}

# drained CASE: every record once, nothing left in the spool.
drained() {
    wait_exit ticker 180 || die "the ticker finishes once there is room"
    check "the ticker ends with exit 0" test "${STATUS[ticker]}" -eq 0
    check_delivered 120 "the broker delivers everything"
    local s i
    s=$(stats)
    check "the spool is empty at the end" test "$(stat_value spool.batches "$s")" -eq 0
    # A segment refused for space at the collector's end is tried again
    # every 100 ms by the broker's service, so the figure clears soon after.
    for ((i = 0; i < 100; i++)); do
        [[ $(stat_value spool.need_bytes "$s") -eq 0 ]] && break
        sleep 0.1
        s=$(stats)
    done
    check "it has room again (need_bytes $(stat_value spool.need_bytes "$s"))" \
        test "$(stat_value spool.need_bytes "$s")" -eq 0
    stop csv
    exactly_once "$(session_file "$TMP/csv-$1" prices)" $TICKS
    exactly_once "$(session_file "$TMP/csv-$1" orderbook)" $BOOKS
    stop ticker
    stop validate
    stop broker
    check "the broker stops cleanly (exit ${STATUS[broker]:-?})" test "${STATUS[broker]:-1}" -eq 0
}

# 1. A stalled sink fills the disk.
disk_config "$TMP/stalled.yaml" stalled
stalled_sink_bus "$TMP/stalled.yaml"
wait_nospace || die "the broker reports the spool out of disk space"
ok "the broker reports the spool out of disk space and holds the collector back"
sleep 2 # let it retry many times: the log must still say it once
s=$(stats) || die "the broker answers while the disk is full"
ok "the broker answers while the disk is full (need_bytes $(stat_value spool.need_bytes "$s"))"
check "it says how much room it needs" test "$(stat_value spool.need_bytes "$s")" -gt 0
n=$(grep -c "no space left on device" "$TMP/broker.log")
check "it logs the full disk once ($n lines)" test "$n" -eq 1
check "the collector is still running, waiting" running ticker
check "the spool kept to the tmpfs ($(df -k "$MNT" | awk 'NR == 2 { print $4 }') KB free)" \
    mountpoint -q "$MNT"
kill -CONT "${PID[csv]}"
drained stalled
n=$(grep -c "spool writes again" "$TMP/broker.log")
check "the broker says it writes again ($n times)" test "$n" -ge 1

# 2. Another file fills the disk, then goes.
mv "$TMP/broker.log" "$TMP/broker-stalled.log"
disk_config "$TMP/filler.yaml" filler
sed -i "1s/}$/, spool_segment_mb: 1}/" "$TMP/filler.yaml"
broker "$TMP/filler.yaml"
worker csv "$TMP/filler.yaml"
worker validate "$TMP/filler.yaml"
wait_joined csv && wait_joined validate || die "the sink and the processor join the broker"
dd if=/dev/zero of="$MNT/other-file" bs=1M 2>/dev/null # until the tmpfs is full
worker ticker "$TMP/filler.yaml"
wait_nospace || die "the broker reports the spool out of disk space (filler)"
ok "with the tmpfs full of another file the collector is held back"
check "the broker is running" running broker
rm "$MNT/other-file"
drained filler
finish
