#!/usr/bin/env bash
# test_spool_oversized_batch.sh -- a batch larger than the spool may ever
# hold is an error, not a full spool.
#
# With broker.spool_max_mb 1, a collector whose batches are about 1.5 MB
# (mock-source, 60,000 records a batch) could never be spooled: before, the
# broker held it as if the spool were full and the pipeline waited for
# ever.  Now the batch is refused with the reason (counted in
# refused_batches, on error.VALIDATION.broker), the collector is refused
# and exits 2 saying why, and another pipeline of the same broker goes on:
# its records all arrive.
. "$(dirname "$0")/lib.sh"

cat >"$TMP/bus.yaml" <<YAML
$(config_head | sed '1s/}$/, spool_max_mb: 1}/')
workers:
  big:   {plugin: mock-source, records: 120000, batch: 60000, stream: big}
  small: {plugin: mock-source, records: 5000, batch: 50, stream: small}
  sink:  {plugin: mock-storage, file: $TMP/big.txt}
  sink2: {plugin: mock-storage, file: $TMP/small.txt}
pipelines:
  big:   {from: big, to: [sink]}
  small: {from: small, to: [sink2]}
YAML
broker "$TMP/bus.yaml"
worker sink "$TMP/bus.yaml"
worker sink2 "$TMP/bus.yaml"
wait_joined sink && wait_joined sink2 || die "the sinks join"
worker big "$TMP/bus.yaml"
wait_exit big 30 || die "the collector of oversized batches ends within 30 s (it used to wait for ever)"
check "it is refused for good: exit 2 (${STATUS[big]})" test "${STATUS[big]}" -eq 2
check "its log says why" grep -q 'can never be spooled' "$TMP/big.log"
check "the broker says why" grep -q 'can never be spooled' "$TMP/broker.log"
s=$(stats) || die "the broker answers the stats request"
check "stats count the refused batch ($(stat_value refused_batches "$s"))" \
    test "$(stat_value refused_batches "$s")" -ge 1
worker small "$TMP/bus.yaml"
wait_exit small 30 || die "the other collector finishes"
check_delivered 30 "the other pipeline is delivered"
stop sink2
check "all 5000 records of the other pipeline arrive" test "$(wc -l <"$TMP/small.txt")" -eq 5000
check "nothing of the oversized batches was stored" test ! -s "$TMP/big.txt"
check "the broker is still running" running broker
finish
