#!/usr/bin/env bash
# test_chaos.sh -- the short version of scripts/chaos: 440,000 records
# through ticker -> json-validate -> csv while kill -9 hits the broker, the
# collector, the processor and the sink, three times each, and a client
# says HELLO as running workers (or as a replica the config lacks) now and
# then; every record must be in the CSV exactly once, compared by content
# with dcbus-reference's output.  Then `dcbus run` of 200,000 ticks is
# killed with -9 after its ticker finished and again mid-drain, and started
# again: it must continue the run each time, and its rows too are each
# stored once.  Last, a shorter run with CURVE (a key per instance): the
# impostors hold the command-line clients' key, valid on the bus but bound
# to no worker, and none may ever be taken, not even while the real worker
# is down.
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
check "nothing lost, nothing doubled, nothing out of order ($last)" \
    test "$last" = "lost: 0 doubled: 0 reordered: 0"
refused=$(sed -n 's/^chaos: impostor HELLOs: \([0-9]*\) refused.*/\1/p' <<<"$out")
check "the broker refused impostor HELLOs ($(grep -o 'impostor HELLOs: .*' <<<"$out"))" \
    test "${refused:-0}" -ge 1

out=$("$PY" "$DCBUS_SOURCE_DIR/scripts/chaos" --build "$BUILD" --ticks 150000 --rate 50000 \
    --kills-each 1 --curve --supervisor-ticks 0 2>&1)
rc=$?
echo "$out"
last=$(tail -n 1 <<<"$out")
check "scripts/chaos --curve ends with exit 0" test $rc -eq 0
check "with CURVE: nothing lost, nothing doubled, nothing out of order ($last)" \
    test "$last" = "lost: 0 doubled: 0 reordered: 0"
impostors=$(grep -o 'impostor HELLOs: .*' <<<"$out")
check "with CURVE: every impostor HELLO refused, none taken ($impostors)" \
    grep -Eq '^impostor HELLOs: [1-9][0-9]* refused, 0 accepted' <<<"$impostors"
finish
