#!/usr/bin/env bash
# test_telescope_flow.sh -- scripts/telescope-flow end to end on a copy of
# config/telescope.yaml in a temp dir (its bus, spool, data and ports
# there): the asdf sink writes one file per session (idle, the failed
# alignment, idle, the alignment, idle, the observation of M31, and the
# last idle, closed when the bus stops), the
# catalog rebuilt from them lists those sessions, the failed alignment and
# the M31 observation are found by their queries, and python3-asdf opens
# the observation's file.
set -uo pipefail
BUILD=${DCBUS_BUILD_DIR:?run through ctest, or set DCBUS_BUILD_DIR}
SOURCE=${DCBUS_SOURCE_DIR:?run through ctest, or set DCBUS_SOURCE_DIR}
tmp=$(mktemp -d /tmp/dcbtel.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
port=$((20000 + RANDOM % 20000))
sed -e "s|ipc://run/telescope-bus|ipc://$tmp/bus|; s|ipc://run/telescope-topics|ipc://$tmp/topics|" \
    -e "s|spool: data/telescope-spool|spool: $tmp/spool|; s|dir: data/telescope|dir: $tmp/data|" \
    -e "s|plugins_path: \[build/plugins\]|plugins_path: [$BUILD/plugins]|" \
    -e "s|port: 18431|port: $port|; s|port: 18432|port: $((port + 1))|; s|port: 18433|port: $((port + 2))|" \
    "$SOURCE/config/telescope.yaml" >"$tmp/telescope.yaml"
passed=0 failed=0
check() { # WHAT COMMAND...
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; passed=$((passed + 1)); else echo "FAIL: $what"; failed=$((failed + 1)); fi
}
DCBUS_BUILD_DIR=$BUILD TELESCOPE_PORT=$port TELESCOPE_LOG=$tmp/run.log "$SOURCE/scripts/telescope-flow" --no-build \
    --observe-seconds 3 --config "$tmp/telescope.yaml" --data "$tmp/data" >"$tmp/flow.log" 2>&1
rc=$?
check "the flow runs to its end" test $rc -eq 0
files=$(find "$tmp/data" -path '*/.staging' -prune -o -name '*.asdf' -print | sort)
check "seven files, one per session, the last idle's too" test "$(wc -l <<<"$files")" -eq 7
check "the observation's file is named for M31" grep -q '/observation_m31_[0-9_]*\.asdf$' <<<"$files"
check "the rebuilt catalog has seven sessions" grep -q "rebuilt the catalog of .*: 7 sessions, 0 files skipped" "$tmp/flow.log"
check "the failed alignment is found" grep -A2 "== failed alignment sessions" "$tmp/flow.log" | grep -q "alignment  *failed"
check "the M31 observation is found" grep -A2 "== observations of targets starting with M" "$tmp/flow.log" | grep -q "observation  *completed M31"
check "python3-asdf opens it" grep -q "cameras/main/frames: uint16" "$tmp/flow.log"
((failed)) && tail -n 40 "$tmp/flow.log"
echo "$passed passed, $failed failed"
((failed == 0))
