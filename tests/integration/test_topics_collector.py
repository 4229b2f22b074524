"""test_topics_collector.py -- the topics collector stores the bus's own history.

A bus with a ticker into csv, and two topics collectors into the same
csv: `history` (every family on one stream, each message's map whole
under `body`, so one CSV header fits all) and `flat` (split: one stream
per family, the map's fields in the record).  With both subscribed the
test starts an observation session, kills `history` with SIGKILL once it
has stored the session's start and restarts it, runs the ticker to its
end and ends the session.
It checks that

  - the session changes and the ticker's run events are stored, in the
    order they happened: session.start.observation, COLLECTION_START,
    COLLECTION_COMPLETE of the ticker, session.end.observation (and each
    CSV file's rows in the order they were taken);
  - the flattened records carry the map's fields as columns (event_type,
    source; id, type, status for sessions);
  - neither collector stores its own tasks' changes (the loop a record,
    a batch, a task change, a record... would make), and `history` has no
    message twice -- not even the broker's replay of the active session
    to a restarted subscriber (the position's fingerprints);
  - the ticker's task is there, RUNNING then COMPLETED, and the metrics;
  - an error a tail worker raises on a malformed line (error.VALIDATION.
    collection) is stored with its ErrorInfo fields and instance.
"""

import csv
import glob
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

bus = lib.Bus()
bad_log = bus.write("bad.jsonl", '{"n": 1}\n{"n": 2,, oops\n{"n": 3}\n')
config = bus.write("bus.yaml", bus.config_head() + """workers:
  tick:    {plugin: ticker, symbols: [AAA], limit: 3000, rate: 2000, batch: 100}
  bad:     {plugin: tail, paths: [%s], start_at: beginning, follow: false, stream: badlines,
            state_dir: %s}
  history: {plugin: topics, stream: history, body_field: body}
  flat:    {plugin: topics, stream: flat, split: true, prefixes: [event., session.]}
  csv:     {plugin: csv, dir: %s}
pipelines:
  ticks:    {from: tick, to: [csv]}
  p_hist:   {from: history, to: [csv]}
  p_flat:   {from: flat, to: [csv]}
  p_bad:    {from: bad, to: [csv]}
""" % (bad_log, bus.path("tailstate"), bus.path("csv")))


def rows(stream):
    """Every row of the stream, file by file in the order of each file's
    first `ts` (one file per session)."""
    files = []
    for path in glob.glob(bus.path("csv", "*", stream + ".csv")):
        with open(path, newline="") as f:
            got = list(csv.DictReader(f))
        if got:
            files.append(got)
    files.sort(key=lambda f: int(f[0]["ts"]))
    return files


def flat_rows(stream):
    return [r for f in rows(stream) for r in f]


def topics_of(stream):
    return [r["topic"] for r in flat_rows(stream)]


def index(seq, pred):
    for i, x in enumerate(seq):
        if pred(x):
            return i
    return -1


bus.broker(config)
bus.worker("csv", config)
for name in ("history", "flat"):
    bus.worker(name, config)
for name in ("history", "flat"):
    bus.check("%s subscribed" % name,
              bus.wait_log(name, "subscribed to the broker's topics", 10))
time.sleep(0.5)  # the subscriptions reach the broker

reply = lib.request(bus.bus_ep, "session_start", {"type": "observation", "meta": {"who": "test"}})
bus.check("an observation session started", reply.get("ok"), str(reply))
# Once history has stored the session's start, it dies and comes back: the
# broker tells the new subscriber the active session again, which must not
# be taken twice.
deadline = time.monotonic() + 15
while time.monotonic() < deadline and "session.start.observation" not in topics_of("history"):
    time.sleep(0.1)
bus.check("history stored the session's start", "session.start.observation" in topics_of("history"))
bus.procs["history"].send_signal(signal.SIGKILL)
bus.procs["history"].wait()
bus.worker("history", config)
bus.check("history resubscribed", bus.wait_log("history", "subscribed to the broker's topics", 10))
time.sleep(0.5)
bus.worker("tick", config)
bus.check("the ticker ran to its end", bus.wait("tick", 30) == 0)
bus.worker("bad", config)  # a malformed line: an error.VALIDATION.collection
bus.check("the tail of a file with a malformed line ran to its end", bus.wait("bad", 30) == 0)
time.sleep(0.5)
reply = lib.request(bus.bus_ep, "session_end", {"status": "completed"})
bus.check("the session ended", reply.get("ok"), str(reply))
deadline = time.monotonic() + 15
while time.monotonic() < deadline and "session.end.observation" not in topics_of("history"):
    time.sleep(0.2)
time.sleep(1.5)  # the last metrics
for name in ("history", "flat"):
    bus.check("%s stops cleanly" % name, bus.stop(name) == 0)
ok, left = bus.wait_delivered(20)
bus.check("the broker delivered every batch", ok, "in flight: %s" % left)

hist = flat_rows("history")
topics = [r["topic"] for r in hist]
for f in rows("history"):
    ts = [int(r["ts"]) for r in f]
    bus.check("history: a file's rows in the order taken", ts == sorted(ts))

i_start = index(topics, lambda t: t == "session.start.observation")
i_cstart = index(topics, lambda t: t == "event.COLLECTION_START.tick")
i_cdone = index(topics, lambda t: t == "event.COLLECTION_COMPLETE.tick")
i_end = index(topics, lambda t: t == "session.end.observation")
bus.check("history: session start, collection start and complete, session end, in order",
          0 <= i_start < i_cstart < i_cdone < i_end, str((i_start, i_cstart, i_cdone, i_end)))
bodies = [json.loads(r["body"]) for r in hist]
start = bodies[i_start] if i_start >= 0 else {}
bus.check("history: the session's map is stored whole",
          start.get("type") == "observation" and start.get("meta") == {"who": "test"}
          and start.get("status") == "active", str(start))
bus.check("history: metrics stored", "metrics" in topics)
bad = [b for t, b in zip(topics, bodies) if t == "error.VALIDATION.collection"]
bus.check("history: the tail's error stored, with its ErrorInfo fields and instance",
          any(b.get("instance") == "bad" and b.get("error_type") == "VALIDATION"
              and b.get("layer_name") == "collection" and b.get("message") for b in bad),
          str(bad[:1]))

tick_tasks = [(t, b) for t, b in zip(topics, bodies) if t.startswith("task.")
              and b.get("name") == "tick"]
statuses = [b["status"] for _, b in tick_tasks]
bus.check("history: the ticker's task, RUNNING then COMPLETED",
          "RUNNING" in statuses and statuses[-1:] == ["COMPLETED"], str(statuses))
own = [t for t, b in zip(topics, bodies) if t.startswith("task.")
       and (b.get("name") in ("history", "flat", "p_hist", "p_flat"))]
bus.check("history: no task of the topics collectors (itself and flat: they would feed each "
          "other)", own == [], str(own[:3]))
pairs = [(r["topic"], r["body"]) for r in hist]
dups = len(pairs) - len(set(pairs))
bus.check("history: no message twice (%d rows)" % len(pairs), dups == 0, "%d doubles" % dups)
starts = topics.count("session.start.observation")
bus.check("history: the active session once, despite the replay to the restarted collector",
          starts == 1, "%d times" % starts)
bus.check("the restarted history resumed from its position",
          "collector resumes where the broker's spool ends" in bus.log("history"))

ev = flat_rows("flat.event")
bus.check("flat: the events' fields are columns",
          any(r.get("event_type") == "COLLECTION_COMPLETE" and r.get("source") == "tick"
              and r["topic"] == "event.COLLECTION_COMPLETE.tick" for r in ev), str(ev[:2]))
se = flat_rows("flat.session")
bus.check("flat: the session's fields are columns, start then end",
          [(r["topic"], r["type"]) for r in se if r["type"] == "observation"]
          == [("session.start.observation", "observation"),
              ("session.end.observation", "observation")], str(se))
bus.check("flat: no task.* or metrics (its prefixes)",
          not flat_rows("flat.task") and not flat_rows("flat.metrics"))

bus.finish()
