#!/usr/bin/env bash
# test_chain_deadletter.sh -- retry, then dead letter, then replay: every
# record stored exactly once.
#
# mock-source (100 records, 10 batches of 10) -> mock-storage whose first
# 25 store() calls fail with DCBUS_ERETRY (NACKed as CONNECTION errors),
# with the chain error_handlers: [retry, deadletter, log]:
#   retry:      types [CONNECTION], max_attempts 3, 20..100 ms back-off
#   deadletter: keeps what retry passes on
#   log:        would log what deadletter did not keep
# A batch stored only after its 3rd failed delivery goes to the dead
# letter.  Counting: 25 failures over 10 batches, at most 2 on a batch
# that is finally stored, leave at least 5 batches dead-lettered, and the
# failures are all used up before the last stored batch.  It checks that
#   - the source still finishes (dead-lettered batches are settled);
#   - `dcbus deadletter list --json` has 5 to 9 dead letters, each a
#     CONNECTION error after 3 deliveries at the sink, and the sink has
#     exactly the other batches' records, once each;
#   - nothing fell through to the log handler;
#   - `dcbus deadletter replay CONFIG --all` replays them all; the sink
#     (failing no more) ends with every record exactly once -- no loss, no
#     double -- and the dead-letter folder is empty afterwards.
. "$(dirname "$0")/lib.sh"

RECORDS=100
CFG=$TMP/bus.yaml
{
    printf 'broker: {bus: %s, topics: %s, spool: %s, heartbeat_ms: 200}\n' \
        "$BUS" "$TOPICS" "$TMP/spool"
    printf 'plugins_path: [%s]\n' "$BUILD/plugins"
    cat <<YAML
workers:
  src: {plugin: mock-source, records: $RECORDS, batch: 10, stream: s}
  sink: {plugin: mock-storage, file: $TMP/sink.txt, fail_times: 25}
  retry: {plugin: retry, types: [CONNECTION], max_attempts: 3, base_ms: 20, max_ms: 100}
  deadletter: {plugin: deadletter, dir: $TMP/dead}
  log: {plugin: log}
pipelines:
  p: {from: src, to: [sink]}
error_handlers: [retry, deadletter, log]
YAML
} >"$CFG"

# sink_check LINES: the sink file's records, checked in Python: one line
# "ok: ..." or "FAIL: ..." saying whether there are LINES of them, each
# n of the source's 0..RECORDS-1 at most once (so all of them once when
# LINES is RECORDS).
sink_check() {
    "$PY" - "$TMP/sink.txt" "$1" $RECORDS <<'PY'
import collections, sys
lines = open(sys.argv[1]).read().split()
ns = collections.Counter(int(l.split(",")[2]) for l in lines)
twice = sorted(n for n, c in ns.items() if c > 1)
strays = sorted(n for n in ns if not 0 <= n < int(sys.argv[3]))
ok = not twice and not strays and len(lines) == int(sys.argv[2])
print("%s: the sink has %d records (expected %s), none twice (%s), none unknown (%s)"
      % ("ok" if ok else "FAIL", len(lines), sys.argv[2], twice[:5], strays[:5]))
PY
}

broker "$CFG"
for who in sink retry deadletter log; do worker $who "$CFG"; done
for who in sink retry deadletter log; do wait_joined $who || die "$who joins the broker"; done
worker src "$CFG"
wait_exit src 30 || die "the source finishes within 30 s although its sink fails"
check "the source ends with exit 0" test "${STATUS[src]}" -eq 0

# The dead letters, once the broker has nothing left in flight.
check_delivered 30 "the broker is done with every batch (stored or dead-lettered)"
"$BIN/dcbus" deadletter list "$CFG" --json >"$TMP/list.json" 2>"$TMP/list.err" ||
    not_ok "dcbus deadletter list answers ($(cat "$TMP/list.err"))"
letters=$("$PY" -c '
import json, sys
print(len(json.load(open(sys.argv[1]))["dead_letters"]))' "$TMP/list.json" 2>/dev/null)
check "5 to 9 batches went to the dead letter ($letters)" \
    test "${letters:-0}" -ge 5 -a "${letters:-0}" -le 9
report "$("$PY" - "$TMP/list.json" <<'PY'
import json, sys
for d in json.load(open(sys.argv[1]))["dead_letters"]:
    ok = (d["error_type"], d["attempts"], d["instance"], d["pipeline"], d["records"]) \
        == ("CONNECTION", 3, "sink", "p", 10)
    print("%s: dead letter %s: a CONNECTION error after 3 deliveries at sink, 10 records "
          "(%s %s %s %s %s)" % ("ok" if ok else "FAIL", d["file"], d["error_type"],
                                 d["attempts"], d["instance"], d["pipeline"], d["records"]))
PY
)"
report "$(sink_check $((RECORDS - 10 * ${letters:-0})))"
check "nothing fell through to the log handler" \
    test "$(grep -c 'msg="log: ' "$TMP/log.log")" -eq 0

"$BIN/dcbus" deadletter replay "$CFG" --all >"$TMP/replay.txt" 2>&1
rc=$?
check "dcbus deadletter replay --all succeeds (exit $rc): $(tail -n 1 "$TMP/replay.txt")" \
    test $rc -eq 0
check "it replayed all $letters" grep -q "^replayed $letters of $letters dead letters" \
    "$TMP/replay.txt"
for ((i = 0; i < 100; i++)); do
    (($(wc -l <"$TMP/sink.txt") >= RECORDS)) && break
    sleep 0.1
done
sleep 0.5 # a record stored twice would show now
report "$(sink_check $RECORDS)"
"$BIN/dcbus" deadletter list "$CFG" >"$TMP/after.txt" 2>&1
check "no dead letter left: $(head -n 1 "$TMP/after.txt")" grep -q "^no dead letters in" \
    "$TMP/after.txt"
finish
