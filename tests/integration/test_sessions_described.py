"""test_sessions_described.py -- a sink with session_open/session_close
(ABI 2.2) is told of each session with its description, and of its end
only once every batch of it has been stored there.

A ticker paced at 2,000 ticks/s feeds a mock-storage sink that sleeps in
every store(), so batches queue up for it.  An `observation` session with
metadata is started and ended while the queue is long.  The sink writes
what it is told into its file beside the batches ("#open", "#close"), so
the test sees (the ticker has one stream, delivered in order, so once a
batch of the next session is stored every batch of the one before is):
  - the session opened with its type and metadata;
  - its close after the last batch of it (not when the end was asked);
  - its close with the status it ended with;
  - a sink killed during the next session, which ends while the sink is
    down, is told of that end after its restart, again after the last
    batch of the session;
  - a broker killed during a named session: the session goes on after the
    restart (same id and start, batches after the restart carry it), and
    the idle session that was active before it is in the history as
    ended; the sink is told of the end once, after the last batch.
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

bus = lib.Bus()
out = bus.path("sink.txt")
config = bus.write("s.yaml", bus.config_head() + """
workers:
  ticks: {plugin: ticker, rate: 2000, batch: 20, linger_ms: 20, orderbook: false}
  sink: {plugin: mock-storage, file: %s, sessions: true, delay_ms: 15}
pipelines:
  p: {from: ticks, to: [sink]}
""" % out)


def request(op, **args):
    return lib.request(bus.bus_ep, op, args, timeout_s=10)


def lines():
    with open(out) as f:
        return [line.rstrip("\n").split(",", 4) for line in f if line.endswith("\n")]


def batch_lines(session):
    # (a line torn by the kill -9 and continued after the restart has
    # other fields: it is nobody's)
    return [i for i, line in enumerate(lines()) if not line[0].startswith("#") and
            len(line) == 4 and line[3] == session]


def wait_for(cond, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def close_index(session):
    for i, line in enumerate(lines()):
        if line[0] == "#close" and line[1] == session:
            return i, line
    return None, None


def queued():
    """Batches waiting at the broker for the sink (not yet sent to it)."""
    st = lib.instance_stats(lib.stats(bus.bus_ep), "sink")
    return st["queue"] if st else 0


def started(type_, meta):
    reply = request("session_start", type=type_, meta=meta)
    bus.check("session_start %s answers" % type_, reply.get("ok"), reply)
    return reply["result"]["id"]


bus.broker(config)
bus.worker("sink", config)
bus.worker("ticks", config)
bus.check("batches reach the sink", wait_for(lambda: os.path.exists(out) and len(lines()) > 50))

# 1. An observation, ended while batches of it queue for the sink.
obs = started("observation", {"target": "M31", "observer": "kim"})
bus.check("batches of the observation reach the sink", wait_for(lambda: batch_lines(obs)))
bus.check("the sink's queue is long", wait_for(lambda: queued() >= 5), queued())
reply = request("session_end", status="failed")
bus.check("session_end answers", reply.get("ok"), reply)
after = reply["result"]["id"]
bus.check("the sink is told the observation ended", wait_for(lambda: close_index(obs)[0]))
# One stream, in order: once a batch of the next session is stored, every
# batch of the observation is.
bus.check("batches of the next session reach the sink", wait_for(lambda: batch_lines(after)))
opened = [line for line in lines() if line[0] == "#open" and line[1] == obs]
bus.check("it was opened with its type, as described", opened and opened[0][2:4] ==
          ["observation", "1"], opened)
bus.check("... and its metadata", opened and json.loads(opened[0][4]) ==
          {"target": "M31", "observer": "kim"}, opened)
at, close = close_index(obs)
rows = batch_lines(obs)
bus.check("its close comes after its last batch", rows and max(rows) < at,
          "last batch line %s, close line %s" % (rows[-1:], at))
bus.check("its close says failed", close[2] == "failed", close)

# 2. A session that ends while the sink is down.
run = started("alignment", {"target": "Vega"})
bus.check("batches of the alignment reach the sink", wait_for(lambda: batch_lines(run)))
bus.check("the sink's queue is long again", wait_for(lambda: queued() >= 5), queued())
bus.procs["sink"].send_signal(signal.SIGKILL)
bus.procs["sink"].wait()
reply = request("session_end", status="completed")
bus.check("session_end answers while the sink is down", reply.get("ok"), reply)
after = reply["result"]["id"]
bus.check("no close while the sink is away", close_index(run)[0] is None)
bus.worker("sink", config)
bus.check("after its restart the sink is told the alignment ended",
          wait_for(lambda: close_index(run)[0]))
bus.check("batches of the session after it reach the sink", wait_for(lambda: batch_lines(after)))
at, close = close_index(run)
rows = batch_lines(run)
bus.check("that close comes after the alignment's last batch", rows and max(rows) < at,
          "last batch line %s, close line %s" % (rows[-1:], at))
bus.check("... and says completed", close[2] == "completed", close)

# 3. The broker is killed during a named session.
obs2 = started("observation", {"target": "M42"})
bus.check("batches of the second observation reach the sink", wait_for(lambda: batch_lines(obs2)))
before = request("sessions")["result"]["sessions"][0]
bus.procs["broker"].send_signal(signal.SIGKILL)
bus.procs["broker"].wait()
n_before = len(batch_lines(obs2))
bus.broker(config)
bus.check("the broker is back", bus.wait_log("broker", "session goes on after a restart", 15))
now = request("sessions")["result"]["sessions"]
bus.check("the observation goes on after the broker's restart", now[0]["id"] == obs2 and
          now[0]["status"] == "active" and now[0]["start"] == before["start"], now[0])
bus.check("more of its batches reach the sink after the restart",
          wait_for(lambda: len(batch_lines(obs2)) > n_before + 20))
reply = request("session_end", status="completed")
after = reply["result"]["id"]
bus.check("the sink is told it ended", wait_for(lambda: close_index(obs2)[0]))
bus.check("batches of the session after it reach the sink", wait_for(lambda: batch_lines(after)))
at, close = close_index(obs2)
rows = batch_lines(obs2)
bus.check("the close comes after its last batch", rows and max(rows) < at,
          "last batch line %s, close line %s" % (rows[-1:], at))
bus.check("it is closed once", [line[1] for line in lines() if line[0] == "#close"].count(obs2)
          == 1)
hist = {x["id"]: x for x in request("sessions")["result"]["sessions"]}
bus.check("the sessions before the restart are in the history", run in hist and obs in hist and
          hist[obs]["status"] == "failed", sorted(hist))
bus.finish()
