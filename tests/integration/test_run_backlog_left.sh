#!/usr/bin/env bash
# test_run_backlog_left.sh -- `dcbus run` does not wait for a sink marked
# `critical: false`, so when it ends before that sink has caught up it says
# exactly what is left and where.
#
# mock-source (2,000 records, batches of 100) -> csv and store
# (mock-storage, critical: false, failing every store() with a retry):
# the run ends once the CSV has everything -- whether store's worker
# registered before the batches came (they are then handed to it and
# refused again and again) or after (they wait in its backlog) -- and its
# summary names what store lacks: how many batches, how many bytes, in
# which folder.
. "$(dirname "$0")/lib.sh"

cat >"$TMP/run.yaml" <<YAML
$(config_head)
workers:
  src:   {plugin: mock-source, records: 2000, batch: 100, stream: s}
  csv:   {plugin: csv, dir: $TMP/csv}
  store: {plugin: mock-storage, file: $TMP/store.txt, critical: false, fail_times: 1000000000}
pipelines:
  p: {from: src, to: [csv, store]}
YAML
"$BIN/dcbus" run --new-run "$TMP/run.yaml" >"$TMP/run.out" 2>"$TMP/run.log" &
PID[run]=$!
wait_exit run 60 || die "dcbus run ends by itself within 60 s"
echo "--- dcbus run's output"
cat "$TMP/run.out"
line=$(grep 'store (critical: false) has not stored everything yet' "$TMP/run.out")
check "the summary says store has not stored everything" test -n "$line"
batches=$(sed -n 's/.*yet: \([0-9]*\) batches.*/\1/p' <<<"$line")
handed=$(sed -n 's/.*, \([0-9]*\) more were handed to it unacknowledged.*/\1/p' <<<"$line")
check "...which of its 20 batches and the end marker wait in its backlog ($batches) or at it ($handed)" \
    test $((${batches:-0} + ${handed:-0})) -eq 21
check "...and where: the broker's spool folder" grep -q "in $TMP/spool/backlog" <<<"$line"
check "the CSV has every record" test "$(($(wc -l <"$(session_file "$TMP/csv" s)") - 1))" -eq 2000
finish
