#!/usr/bin/env bash
# test_chaos.sh -- the short version of scripts/chaos: 330,000 records
# through ticker -> json-validate -> csv while kill -9 hits the broker, the
# collector, the processor and the sink, each at least three times; every
# record must be in the CSV exactly once, compared by content with
# dcbus-reference's output.
. "$(dirname "$0")/lib.sh"

out=$("$PY" "$DCBUS_SOURCE_DIR/scripts/chaos" --build "$BUILD" --ticks 300000 --rate 50000 \
    --kill-every 0.5 --min-kills 3 2>&1)
rc=$?
echo "$out"
last=$(tail -n 1 <<<"$out")
kills=$(grep -o 'kills: .*' <<<"$out")
check "scripts/chaos ends with exit 0" test $rc -eq 0
check "every process was killed at least 3 times ($kills)" \
    bash -c "grep -Eq 'broker ([3-9]|[1-9][0-9]), ticker ([3-9]|[1-9][0-9]), validate ([3-9]|[1-9][0-9]), csv ([3-9]|[1-9][0-9])$' <<<'$kills'"
check "nothing lost, nothing doubled ($last)" test "$last" = "lost: 0 doubled: 0"
finish
