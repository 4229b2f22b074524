"""test_session_begin_confirmed.py -- the answer to session_start (and
session_end) comes once every collector stamps what it collects with the
session begun, so a client that starts a session and then feeds a collector
finds its records in that session (seed 000's process: start a run, then
post its spray events).

An http-listen collector into mock-storage (sessions: true):
1. Twenty times: session_start, then one record POSTed at once; each
   record's line must carry the session that session_start answered.  Then
   session_end and a record: in the idle session it began.  The broker
   logged no answer given before a collector took the session.
2. The collector stopped (SIGSTOP) before a session_start: it cannot say
   it took the session, so the broker answers only at the end of its wait
   (1 s), and logs that it answered before every collector did.  Without
   the wait the answer comes at once and nothing is logged.  After SIGCONT
   the collector publishes its SESSION_BEGUN (event.SESSION_BEGUN.push),
   and a record POSTed then lands in that session.
"""

import os
import signal
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

EARLY = "answered before every collector took the session it began"

bus = lib.Bus()
port = lib.free_port()
lines = bus.path("lines.csv")
# heartbeat 2 s: a collector stopped for the broker's 1 s wait stays alive.
config = bus.write("bus.yaml", bus.config_head(heartbeat_ms=2000) + """
workers:
  push: {plugin: http-listen, port: %d, stream: pushed, batch_records: 1}
  lines: {plugin: mock-storage, file: %s, sessions: true}
pipelines:
  pushed: {from: push, to: [lines]}
""" % (port, lines))
bus.broker(config)
begun = zmq.Context.instance().socket(zmq.SUB)
begun.setsockopt(zmq.SUBSCRIBE, b"event.SESSION_BEGUN.push")
begun.connect(bus.topics_ep)
bus.check("the workers join", bus.joined(config, "lines", "push"))
bus.check("the collector listens", lib.wait_for(
    lambda: lib.http_post(port, "/records", b"", {"Content-Type": "application/x-ndjson"})[0]
    is not None, 15))

posted = {}  # n -> the session it must be in


def wait_begun(session, timeout_s=15):
    """Until the collector's SESSION_BEGUN of `session` is published."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if begun.poll(100):
            _, body = begun.recv_multipart()
            if msgpack.unpackb(body, raw=False).get("data", {}).get("session") == session:
                return True
    return False


def post(n):
    status, answer, _ = lib.http_post(port, "/records", b'{"n": %d}\n' % n,
                                      {"Content-Type": "application/x-ndjson"})
    return status == 200 or print("    | POST %d: %s %s" % (n, status, answer))


def ask(op, **args):
    reply = lib.request(bus.bus_ep, op, args, timeout_s=10)
    return reply["result"]["id"] if reply.get("ok") else print("    | %s: %s" % (op, reply))


# 1. Each record posted right after session_start is in that session.
ok = True
for n in range(20):
    session = ask("session_start", type="run", meta={"n": n})
    ok = bool(session) and post(n) and ok
    posted[n] = session
bus.check("20 sessions started, a record posted in each", ok)
idle = ask("session_end", status="completed")
bus.check("session_end answered, a record posted", bool(idle) and post(20))
posted[20] = idle
bus.check("no answer before the collectors took the session", EARLY not in bus.log("broker"))

# 2. A collector that cannot answer: the broker waits for it, then answers.
push = bus.procs["push"]
push.send_signal(signal.SIGSTOP)
try:
    stopped_session = ask("session_start", type="run", meta={"n": 21})
finally:
    push.send_signal(signal.SIGCONT)
bus.check("session_start answered while the collector was stopped", bool(stopped_session))
bus.check("the broker waited for the stopped collector, and said so", EARLY in bus.log("broker"))
# Answered before the collector took it: a record posted now could still
# be stamped with the session before, so the test waits for its word.
bus.check("the collector took the session once it went on", wait_begun(stopped_session))
bus.check("a record posted after that", post(21))
posted[21] = stopped_session

ok, left = bus.wait_delivered(30)
bus.check("everything delivered", ok, "in flight: %s" % left)
found = {}
with open(lines) as f:
    for line in f:
        fields = line.rstrip("\n").split(",")
        if not line.startswith("#") and len(fields) == 4 and fields[2]:
            found.setdefault(int(fields[2]), []).append(fields[3])
wrong = {n: (found.get(n), s) for n, s in posted.items() if found.get(n) != [s]}
bus.check("each record once, in the session begun before it was posted", not wrong, wrong)
bus.finish()
