#!/usr/bin/env bash
# test_sessions_files.sh -- sessions start, end and rotate, and the CSV
# files follow them.
#
# A ticker at 1,000 ticks a second (batches of 50, one symbol, ts advancing
# 1 ms a tick: a record's ts is within a few ms of when it was made) writes
# through the csv sink into <dir>/<session id>/prices.csv, on a broker that
# rotates idle sessions every 2 s.  While it runs:
#   dcbus sessions start observation --meta target=M31 --meta operator=ana
#   (3 s), dcbus sessions end, then 5 s of idle (two rotations at least).
# `dcbus watch session. metrics --json` records the session.* topics.  It
# checks that
#   - session.* messages come in order: each end names the session the
#     previous start began, and a start follows each end at once; topics
#     are session.<start|end>.<type>;
#   - the observation has the id `sessions start` printed and its metadata,
#     is not rotated although it outlasts the rotation period, and ends
#     completed when asked; `sessions end` again is refused (only idle);
#   - idle sessions are rotated every 2 s (at most a second late);
#   - `dcbus sessions list --json` shows the observation, completed, with
#     its metadata;
#   - every CSV folder is a session seen on the topics, each row's ts lies
#     within its session's time span (0.25 s of slack for batching), the
#     observation's folder has its ~3 s of rows, and across the folders n
#     is 0..N-1 once each: nothing lost or doubled at a session change;
#   - the csv checkpoint keeps prices' seqs as one range: the end markers'
#     seqs reach the sink too.
. "$(dirname "$0")/lib.sh"

CFG=$TMP/bus.yaml
{
    printf 'broker: {bus: %s, topics: %s, spool: %s, heartbeat_ms: 200, session_rotate_s: 2}\n' \
        "$BUS" "$TOPICS" "$TMP/spool"
    printf 'plugins_path: [%s]\n' "$BUILD/plugins"
    cat <<YAML
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT], rate: 1000, batch: 50, orderbook: false,
           step_us: 1000}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, to: [csv]}
YAML
} >"$CFG"

sessions() { "$BIN/dcbus" sessions --config "$CFG" "$@"; }

broker "$CFG"
start watch "$BIN/dcbus" watch --config "$CFG" session. metrics --json
wait_for "$TMP/watch.log" '"topic":"metrics"' 10 || die "dcbus watch receives the metrics topic"
worker csv "$CFG"
wait_joined csv || die "the sink joins the broker"
worker ticker "$CFG"
wait_joined ticker || die "the ticker joins the broker"
sleep 1.5

sessions start observation --meta target=M31 --meta operator=ana --json >"$TMP/started.json" ||
    die "dcbus sessions start answers"
sleep 3
sessions end >"$TMP/ended.txt" || not_ok "dcbus sessions end answers"
check "dcbus sessions end says the session ended and idle is active: $(cat "$TMP/ended.txt")" \
    grep -q '^ended the session as completed; now active: idle-' "$TMP/ended.txt"
sessions end 2>"$TMP/end-again.txt"
check "a second dcbus sessions end is refused (exit 1: only idle is active)" test $? -eq 1
sleep 5.2

stop ticker
check "the ticker stops on SIGTERM with exit 0" test "${STATUS[ticker]}" -eq 0
check_delivered 10 "the broker delivers every batch of the ticker to the sink"
stop csv
check "the sink stops on SIGTERM with exit 0" test "${STATUS[csv]}" -eq 0
# Each session change spends a seq on an end marker; the sink notes it, so
# the seqs it wrote stay one range (gaps would pile up, one per session).
ranges=$(awk '$1 == "stream" && $2 == "prices" { print NF - 2 }' "$TMP/csv/.dcbus-csv-checkpoint")
check "the csv checkpoint holds prices' seqs as one range across the sessions (${ranges:-no} ranges)" \
    test "${ranges:-0}" -eq 1
sessions list --json >"$TMP/list.json" || not_ok "dcbus sessions list --json answers"
sessions list >"$TMP/list.txt" || not_ok "dcbus sessions list answers"
kill -INT "${PID[watch]}"
wait_exit watch 5

out=$("$PY" - "$TMP" <<'PY'
import csv, json, os, sys

tmp = sys.argv[1]
SLACK_US = 250000

def check(what, ok, detail=""):
    print("%s: %s%s" % ("ok" if ok else "FAIL", what, " (%s)" % detail if detail else ""))

msgs = []
for line in open(tmp + "/watch.log"):
    if line.startswith("{"):
        m = json.loads(line)
        if m["topic"].startswith("session."):
            msgs.append((m["topic"].split(".")[1], m["body"], m["topic"]))
check("session.* topics seen (%d)" % len(msgs), len(msgs) >= 8)
check("every topic is session.<start|end>.<type of the session>",
      all(t == "session.%s.%s" % (e, b["type"]) for e, b, t in msgs))

# Order: end X, start Y, end Y, start Z, ...
ok, prev_start = True, None
for i, (event, body, _) in enumerate(msgs):
    if event == "end":
        if prev_start is not None and body["id"] != prev_start:
            ok = False
        nxt = msgs[i + 1] if i + 1 < len(msgs) else None
        if nxt and nxt[0] != "start":
            ok = False
    else:
        prev_start = body["id"]
check("each end names the session the previous start began; a start follows each end", ok,
      " ".join("%s:%s" % (e, b["id"]) for e, b, _ in msgs))

ended = {b["id"]: b for e, b, _ in msgs if e == "end"}
started = {b["id"]: b for e, b, _ in msgs if e == "start"}
spans = {sid: (b["start"], b["end"]) for sid, b in ended.items()}

try:
    obs_id = json.load(open(tmp + "/started.json"))["id"]
except (OSError, ValueError, KeyError) as e:
    obs_id = None
    check("dcbus sessions start --json prints the new session", False, str(e))
obs_start, obs_end = started.get(obs_id), ended.get(obs_id)
check("session.start.observation announces %s with its metadata" % obs_id,
      obs_start is not None and obs_start["type"] == "observation"
      and obs_start["meta"] == {"target": "M31", "operator": "ana"},
      str(obs_start and obs_start["meta"]))
check("the observation ends once, completed, after ~3 s: not rotated like idle sessions",
      obs_end is not None and obs_end["status"] == "completed" and obs_end["duration_s"] >= 2.8,
      str(obs_end and (obs_end["status"], obs_end["duration_s"])))

after = [b for e, b, _ in msgs if e == "end" and obs_end and b["start"] >= obs_end["end"]]
rotated = [b["duration_s"] for b in after if b["type"] == "idle"]
check("idle sessions after the observation rotate every 2 s, at most 1 s late: %s" % rotated,
      len(rotated) >= 2 and all(1.9 <= d <= 3.2 for d in rotated))

try:
    listed = {s["id"]: s for s in json.load(open(tmp + "/list.json"))["sessions"]}
except (OSError, ValueError, KeyError) as e:
    listed = {}
    check("dcbus sessions list --json prints {\"sessions\": [...]}", False, str(e))
s = listed.get(obs_id)
check("dcbus sessions list --json has the observation, completed, with its metadata",
      s is not None and s["status"] == "completed" and s["meta"] == {"target": "M31", "operator": "ana"})
check("dcbus sessions list shows it too",
      any(l.split()[:3] == [obs_id, "observation", "completed"]
          for l in open(tmp + "/list.txt")))

# The CSV folders.
root = tmp + "/csv"
# (csv keeps its checkpoint, a file, beside the session folders)
folders = sorted(f for f in os.listdir(root) if os.path.isdir(os.path.join(root, f)))
known = set(started) | set(ended)
check("every CSV folder is a session seen on the topics: %s" % folders,
      all(f in known for f in folders) and len(folders) >= 3)
rows_by_session = {}
for f in folders:
    with open(os.path.join(root, f, "prices.csv"), newline="") as fh:
        rows_by_session[f] = [(int(r["n"]), int(r["ts"])) for r in csv.DictReader(fh)]
for f, rows in rows_by_session.items():
    lo, hi = spans.get(f, (started.get(f, {}).get("start"), None))
    if lo is None:
        check("%s: a session with a known start" % f, False)
        continue
    early = max([lo - ts for _, ts in rows] + [0]) / 1000
    late = max([ts - hi for _, ts in rows if hi is not None] + [0]) / 1000
    check("%s: the ts of its %d rows lie within the session's span, give or take %d ms"
          % (f, len(rows), SLACK_US // 1000), max(early, late) <= SLACK_US / 1000,
          "earliest %.0f ms before its start, latest %.0f ms after its end" % (early, late))
check("the observation's folder holds its ~3 s of rows",
      len(rows_by_session.get(obs_id, [])) >= 2500, str(len(rows_by_session.get(obs_id, []))))
ordered = sorted(rows_by_session.items(), key=lambda kv: (spans.get(kv[0]) or (1 << 62,))[0])
ns = [n for _, rows in ordered for n, _ in rows]
check("across the session folders n = 0..%d, in session order, once each" % (len(ns) - 1),
      ns == list(range(len(ns))))
PY
)
while IFS= read -r line; do
    case $line in
    ok:*) ok "${line#ok: }" ;;
    *) not_ok "${line#FAIL: }" ;;
    esac
done <<<"$out"
finish
