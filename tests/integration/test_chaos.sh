#!/usr/bin/env bash
# test_chaos.sh -- the short version of scripts/chaos: 440,000 records
# through ticker -> json-validate -> csv while kill -9 hits the broker, the
# collector, the processor and the sink, three times each, and a client
# says HELLO as running workers (or as a replica the config lacks) now and
# then; every record must be in the CSV exactly once, compared by content
# with dcbus-reference's output.  Then `dcbus run` of 200,000 ticks is
# killed with -9 after its ticker finished and again mid-drain, and started
# again: it must continue the run each time, and its rows too are each
# stored once.
. "$(dirname "$0")/lib.sh"

out=$("$PY" "$DCBUS_SOURCE_DIR/scripts/chaos" --build "$BUILD" --ticks 400000 --rate 50000 \
    --kills-each 3 2>&1)
rc=$?
echo "$out"
last=$(tail -n 1 <<<"$out")
kills=$(grep -o 'kills: .*' <<<"$out")
check "scripts/chaos ends with exit 0" test $rc -eq 0
check "every process was killed 3 times ($kills)" \
    test "$kills" = "kills: broker 3, ticker 3, validate 3, csv 3"
check "dcbus run was killed after the ticker finished and mid-drain" \
    test "$(grep -c '^chaos: supervisor: dcbus run killed -9' <<<"$out")" -eq 2
check "...and continued the run each time" grep -q '^chaos: supervisor: continued each time' \
    <<<"$out"
check "nothing lost, nothing doubled ($last)" test "$last" = "lost: 0 doubled: 0"
refused=$(sed -n 's/^chaos: impostor HELLOs: \([0-9]*\) refused.*/\1/p' <<<"$out")
check "the broker refused impostor HELLOs ($(grep -o 'impostor HELLOs: .*' <<<"$out"))" \
    test "${refused:-0}" -ge 1
finish
