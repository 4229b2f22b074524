#!/usr/bin/env bash
# test_run_refused_for_good.sh -- a worker refused for a reason a restart
# cannot fix ends `dcbus run` at once, with that reason and exit 3, instead
# of being restarted again and again.
#
# The csv sink's `dir` lies under a regular file: `dcbus check` cannot see
# that (the setting is a well-formed path), the plugin's open() can (it
# cannot create the directory), and dcbus-worker exits 2.  It checks that
# `dcbus run` ends by itself within 30 s (with the restart back-off it would
# take minutes), with exit 3, naming the instance and the reason, and that
# the sink was never restarted.  Then the same for a refusal by the broker
# (ERROR code `refused` at HELLO): with CURVE keys bound to instances, the
# sink's key files are a copy of the ticker's.
. "$(dirname "$0")/lib.sh"

: >"$TMP/afile"
ticks_config "$TMP/bus.yaml" 1000
sed -i "s|dir: $TMP/csv|dir: $TMP/afile/csv|" "$TMP/bus.yaml"
"$BIN/dcbus" check "$TMP/bus.yaml" >"$TMP/check.log" 2>&1
check "dcbus check finds nothing wrong with the config" test $? -eq 0

start run "$BIN/dcbus" run "$TMP/bus.yaml"
wait_exit run 30 || die "dcbus run ends by itself within 30 s"
check "dcbus run exits 3 (${STATUS[run]})" test "${STATUS[run]}" -eq 3
check "it names the worker and the reason" \
    grep -qE '^dcbus run: not restarted, refused for good: instance=csv replica=0 exit=2: plugin not opened: plugin csv: open\(\) failed: csv: cannot create .*: Not a directory' \
    "$TMP/run.log"
check "the sink was not restarted" \
    test "$(grep -c 'msg="child restarted" instance=csv' "$TMP/run.log")" -eq 0
check "the other children were stopped" grep -q 'msg="stopped" clean=no' "$TMP/run.log"

# --- a HELLO refused ---------------------------------------------------------
ticks_config "$TMP/plain.yaml" 1000
"$BIN/dcbus" keygen --config "$TMP/plain.yaml" --dir "$TMP/keys" >"$TMP/section.yaml" ||
    die "dcbus keygen --config makes the keys"
cat "$TMP/plain.yaml" "$TMP/section.yaml" >"$TMP/keys.yaml"
for suffix in "" _secret; do cp "$TMP/keys/ticker$suffix" "$TMP/keys/csv$suffix"; done
start keyrun "$BIN/dcbus" run "$TMP/keys.yaml"
wait_exit keyrun 30 || die "dcbus run with a refused key ends by itself within 30 s"
check "dcbus run with a refused key exits 3 (${STATUS[keyrun]})" test "${STATUS[keyrun]}" -eq 3
check "it names the worker and the broker's reason" \
    grep -qE "^dcbus run: not restarted, refused for good: instance=csv replica=0 exit=2: the broker refused this worker \(refused\): the CURVE key of 'ticker' may not register as storage 'csv'" \
    "$TMP/keyrun.log"
check "the refused sink was not restarted" \
    test "$(grep -c 'msg="child restarted" instance=csv' "$TMP/keyrun.log")" -eq 0
finish
