#!/usr/bin/env bash
# test_supervisord_example.sh -- config/supervisord.conf does what
# docs/operations.md says: run the demo under a real supervisord, the
# collector finishes and is not restarted, every record reaches the CSV
# file, and `supervisorctl shutdown` stops processors, sinks, then the
# broker, each with exit status 0.
set -uo pipefail

BUILD=${DCBUS_BUILD_DIR:?run through ctest, or set DCBUS_BUILD_DIR}
SOURCE=${DCBUS_SOURCE_DIR:?run through ctest, or set DCBUS_SOURCE_DIR}
if ! command -v supervisord >/dev/null; then
    echo "supervisord is not installed (scripts/setup installs it)"
    exit 1
fi

# A copy of the checkout's layout: config/ as in the repository, build/
# pointing at the build under test, run/ and data/ created here.
TMP=$(mktemp -d)
svpid=""
cleanup() {
    [[ -n "$svpid" ]] && kill -TERM "$svpid" 2>/dev/null && wait "$svpid"
    rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$TMP/config" "$TMP/run"
ln -s "$BUILD" "$TMP/build"
cp "$SOURCE/config/supervisord.conf" "$TMP/config/"
records=100000
sed -e "s|^plugins_path:.*|plugins_path: [$BUILD/plugins]|" \
    -e "s|^\( *limit:\) *[0-9]*|\1 $records|" "$SOURCE/config/demo.yaml" >"$TMP/config/demo.yaml"
# supervisorctl; its output only (its exit status is 3 when a program is
# not running, which is what is being waited for here).
ctl() { supervisorctl -c "$TMP/config/supervisord.conf" "$@" 2>&1 || true; }

passed=0
failed=0
check() { # check WHAT COMMAND...
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $what"
    fi
}

supervisord -n -c "$TMP/config/supervisord.conf" >/dev/null 2>&1 &
svpid=$!

finished=false
for ((i = 0; i < 120; i++)); do # up to 60 s
    if [[ $(ctl status ticker:ticker-0) == *EXITED* ]]; then
        finished=true
        break
    fi
    sleep 0.5
done
check "the collector runs and exits" $finished
sleep 1.5 # longer than startsecs: a restart would show now
status=$(ctl status)
check "the finished collector is not restarted" grep -Eq "^ticker:ticker-0 +EXITED" <<<"$status"
check "the collector was started once" \
    [ "$(grep -c "spawned: 'ticker-0'" "$TMP/run/supervisord.log")" -eq 1 ]
check "the broker, the processor and the sink keep running" \
    [ "$(grep -c RUNNING <<<"$status")" -eq 3 ]

csv=$(find "$TMP/data/csv" -name prices.csv 2>/dev/null | head -n 1)
rows=0
for ((i = 0; i < 100; i++)); do # the sink may still be writing the last batches
    [[ -n "$csv" ]] && rows=$(($(wc -l <"$csv") - 1))
    [[ $rows -ge $records ]] && break
    sleep 0.1
    csv=$(find "$TMP/data/csv" -name prices.csv 2>/dev/null | head -n 1)
done
check "every record is in the CSV file ($rows of $records)" [ "$rows" -eq "$records" ]

ctl shutdown >/dev/null
wait "$svpid"
svpid=""
log=$TMP/run/supervisord.log
line() { grep -nE "$1" "$log" | head -n 1 | cut -d: -f1; }
validate=$(line "stopped: validate-0 \(exit status 0\)")
csvline=$(line "stopped: csv-0 \(exit status 0\)")
broker=$(line "stopped: broker \(exit status 0\)")
check "every program stopped with exit status 0" [ -n "$validate" -a -n "$csvline" -a -n "$broker" ]
check "shutdown stops processor, then sink, then broker" \
    [ "${validate:-0}" -lt "${csvline:-0}" -a "${csvline:-0}" -lt "${broker:-0}" ]

if [[ $failed -gt 0 ]]; then
    echo "--- supervisord.log:"
    sed 's/^/    | /' "$log"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
