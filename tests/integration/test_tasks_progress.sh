#!/usr/bin/env bash
# test_tasks_progress.sh -- a collection run is a task whose progress goes
# from 0 to 1, and a run whose source fails ends FAILED with its error.
#
# Two pipelines on one broker:
#   ticks:   ticker (20,000 ticks at 10,000 a second, so 2 s of progress
#            reports) -> json-validate -> csv
#   failing: mock-source (1,000 records, fail_after: 300) -> mock-storage
# `dcbus watch task. metrics --json` records every task.* message.  It
# checks that
#   - the ticker's run is two tasks, collection and pipeline, each seen
#     from progress 0 through values strictly between 0 and 1 to
#     COMPLETED with progress 1.0; progress never goes down and the status
#     only forward (PENDING, RUNNING, COMPLETED); the records count ends
#     at every record sent;
#   - the failing run's two tasks end FAILED with a non-empty error, and
#     count the 300 records the source produced before it failed (all of
#     them reached the sink);
#   - `dcbus tasks --json` agrees with the last message of each task, and
#     `dcbus tasks` (table) and `dcbus tasks --watch` (lines, no terminal)
#     show the same statuses;
#   - `dcbus watch` ends cleanly (exit 0) on SIGINT, as on Ctrl-C.
. "$(dirname "$0")/lib.sh"

TICKS=20000
TOTAL=$((TICKS + TICKS / 10)) # the ticker's records: ticks and order-book snapshots
CFG=$TMP/bus.yaml

{
    printf 'broker: {bus: %s, topics: %s, spool: %s, heartbeat_ms: 200}\n' \
        "$BUS" "$TOPICS" "$TMP/spool"
    printf 'plugins_path: [%s]\n' "$BUILD/plugins"
    cat <<YAML
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $TICKS, rate: 10000,
           batch: 100, seed: 5}
  validate: {plugin: json-validate, required: [symbol, ts, n]}
  csv: {plugin: csv, dir: $TMP/csv}
  src: {plugin: mock-source, records: 1000, batch: 10, fail_after: 300}
  sink: {plugin: mock-storage, file: $TMP/sink.txt}
pipelines:
  ticks: {from: ticker, through: [validate], to: [csv]}
  failing: {from: src, to: [sink]}
YAML
} >"$CFG"

broker "$CFG"
start watch "$BIN/dcbus" watch --config "$CFG" task. metrics --json
# The first metrics message proves the subscriptions reached the broker.
wait_for "$TMP/watch.log" '"topic":"metrics"' 10 || die "dcbus watch receives the metrics topic"
worker csv "$CFG"
worker validate "$CFG"
worker sink "$CFG"
for who in csv validate sink; do wait_joined $who || die "$who joins the broker"; done

worker ticker "$CFG"
wait_exit ticker 60 || die "the ticker finishes $TOTAL records within 60 s"
check "the ticker ends by itself with exit 0" test "${STATUS[ticker]}" -eq 0
wait_for "$TMP/watch.log" '"topic":"task\.COMPLETED\.ticker-[0-9]+/ticks"' 10 ||
    not_ok "the pipeline task of the ticker's run completes within 10 s"

worker src "$CFG"
wait_exit src 20 || die "the failing source stops within 20 s"
check "the failing source exits with status 1" test "${STATUS[src]}" -eq 1
wait_for "$TMP/watch.log" '"topic":"task\.FAILED\.src-[0-9]+/failing"' 10 ||
    not_ok "the pipeline task of the failing run fails within 10 s"

kill -INT "${PID[watch]}"
wait_exit watch 5 || die "dcbus watch stops on SIGINT within 5 s"
check "dcbus watch ends cleanly on SIGINT (exit ${STATUS[watch]})" test "${STATUS[watch]}" -eq 0

"$BIN/dcbus" tasks --config "$CFG" --json >"$TMP/tasks.json" 2>"$TMP/tasks.err" ||
    not_ok "dcbus tasks --json answers ($(cat "$TMP/tasks.err"))"
"$BIN/dcbus" tasks --config "$CFG" >"$TMP/table.txt" 2>&1 || not_ok "dcbus tasks answers"
timeout -s INT --preserve-status 1.5 "$BIN/dcbus" tasks --config "$CFG" --watch \
    >"$TMP/watch-tasks.txt" 2>&1
check "dcbus tasks --watch ends cleanly on SIGINT" test $? -eq 0

# The checks on what was seen, in Python: one "ok: ..." or "FAIL: ..." a line.
out=$("$PY" - "$TMP" $TOTAL <<'PY'
import json, re, sys

tmp, total = sys.argv[1], int(sys.argv[2])
RANK = {"PENDING": 0, "RUNNING": 1, "COMPLETED": 2, "FAILED": 2, "CANCELLED": 2}

def check(what, ok, detail=""):
    print("%s: %s%s" % ("ok" if ok else "FAIL", what, " (%s)" % detail if detail else ""))

seen = {}  # task id -> [TaskInfo, ...] in arrival order
for line in open(tmp + "/watch.log"):
    if line.startswith("{"):
        msg = json.loads(line)
        if msg["topic"].startswith("task."):
            body = msg["body"]
            check_topic = msg["topic"] == "task.%s.%s" % (body["status"], body["id"])
            if not check_topic:
                check("topic %s names the task's status and id" % msg["topic"], False)
            seen.setdefault(body["id"], []).append(body)

def one(pattern):
    ids = [i for i in seen if re.fullmatch(pattern, i)]
    check("one task matches %s" % pattern, len(ids) == 1, ", ".join(ids))
    return ids[0] if len(ids) == 1 else None

def follows(tid, final):
    msgs = seen[tid]
    progress = [m["progress"] for m in msgs]
    statuses = [m["status"] for m in msgs]
    check("%s: progress never goes down over %d messages" % (tid, len(msgs)),
          all(a <= b for a, b in zip(progress, progress[1:])), str(progress))
    check("%s: status only moves forward" % tid,
          all(RANK[a] <= RANK[b] for a, b in zip(statuses, statuses[1:])), str(statuses))
    check("%s: first seen PENDING with progress 0" % tid,
          statuses[0] == "PENDING" and progress[0] == 0, "%s %s" % (statuses[0], progress[0]))
    check("%s: last seen %s" % (tid, final), statuses[-1] == final, statuses[-1])
    check("%s: one final message" % tid, sum(RANK[s] == 2 for s in statuses) == 1, str(statuses))
    return msgs

ticker = one(r"ticker-\d+")
if ticker:
    for tid, ttype in ((ticker, "collection"), (ticker + "/ticks", "pipeline")):
        if tid not in seen:
            check("%s seen" % tid, False)
            continue
        msgs = follows(tid, "COMPLETED")
        last = msgs[-1]
        between = [m["progress"] for m in msgs if 0 < m["progress"] < 1]
        check("%s: type %s" % (tid, ttype), last["type"] == ttype, last["type"])
        check("%s: progress reported on the way (%d values strictly between 0 and 1)"
              % (tid, len(between)), len(between) >= 5)
        check("%s: ends with progress 1.0" % tid, last["progress"] == 1.0, str(last["progress"]))
        check("%s: ends with records = %d" % (tid, total), last["records"] == total,
              str(last["records"]))
        check("%s: started and finished times in order" % tid,
              0 < last["created"] <= last["started"] <= last["finished"])
        check("%s: no error" % tid, not last["error"], str(last["error"]))

stored = sum(1 for _ in open(tmp + "/sink.txt"))
src = one(r"src-\d+")
if src:
    for tid in (src, src + "/failing"):
        if tid not in seen:
            check("%s seen" % tid, False)
            continue
        last = follows(tid, "FAILED")[-1]
        check("%s: ends FAILED with an error" % tid, bool(last["error"]), repr(last["error"]))
        check("%s: finished time set" % tid, last["finished"] >= last["started"] > 0)
        check("%s: counts the %d records that reached the sink" % (tid, stored),
              last["records"] == stored == 300, "records %s" % last["records"])

try:
    listed = {t["id"]: t for t in json.load(open(tmp + "/tasks.json"))["tasks"]}
except (OSError, ValueError, KeyError) as e:
    listed = {}
    check("dcbus tasks --json prints {\"tasks\": [...]}", False, str(e))
for tid, msgs in seen.items():
    last, got = msgs[-1], listed.get(tid)
    keys = ("status", "progress", "records", "error", "type", "name")
    check("dcbus tasks --json agrees with the last task.* message of %s" % tid,
          got is not None and all(got[k] == last[k] for k in keys),
          "listed %s, watched %s" % (got and {k: got[k] for k in keys}, {k: last[k] for k in keys}))

table = open(tmp + "/table.txt").read().splitlines()
lines = open(tmp + "/watch-tasks.txt").read().splitlines()
for tid, msgs in seen.items():
    status = msgs[-1]["status"]
    check("dcbus tasks shows %s %s" % (tid, status),
          any(l.split()[:1] == [tid] and status in l.split() for l in table))
    check("dcbus tasks --watch prints a line for %s %s" % (tid, status),
          any(tid in l.split() and status in l.split() for l in lines))
PY
)
while IFS= read -r line; do
    case $line in
    ok:*) ok "${line#ok: }" ;;
    *) not_ok "${line#FAIL: }" ;;
    esac
done <<<"$out"
finish
