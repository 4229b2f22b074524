"""test_topics_late_subscriber.py -- a monitor that subscribes while the
bus runs is told the state: the active session, the running tasks, the
last metrics; and a clean stop of the broker ends the session.

One pipeline runs a mock-source to its end (its tasks are COMPLETED);
another has a collector played by this test, which says HELLO with a run
id and then nothing (so the RUNNING messages of its two tasks go out once,
before anyone listens, and never again); an observation session is
started with metadata.  Then, subscribing only now, it checks that

  - a subscriber to `session.` gets the observation's session.start with
    its id and metadata, and no other session message;
  - one to `task.` gets the RUNNING message of each running task, and
    nothing of the finished run;
  - one to everything (`''`) gets all of it;
  - a subscription to `metrics` gets the metrics and makes the broker
    publish nothing else, and one to a single task's topic only that
    task's message (seen by the subscriber to everything, which gets any
    session or task message published);
  - a second subscription to `session.` -- a prefix subscribed before --
    is seen and answered too (XPUB_VERBOSER), and the subscribers before
    get the value again;
  - at a clean stop (SIGTERM) the broker publishes session.end for the
    observation, completed, and exits 0;
  - started again on the same state, the broker tells a new `task.`
    subscriber the tasks its table still has running.
"""

import os
import re
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

SOURCE = os.environ.get("DCBUS_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RUN = "late-run-1"
bus = lib.Bus()
ctx = zmq.Context.instance()


def abi_version():
    """The ABI the broker speaks, from the plugin header."""
    with open(os.path.join(SOURCE, "common", "include", "dcbus", "plugin.h")) as f:
        text = f.read()
    major = int(re.search(r"#define DCBUS_ABI_MAJOR\s+(\d+)", text).group(1))
    minor = int(re.search(r"#define DCBUS_ABI_MINOR\s+(\d+)", text).group(1))
    return major << 16 | minor


def request(op, **args):
    """One REQUEST on the bus endpoint; the REPLY body."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(bus.bus_ep)
    try:
        sock.send_multipart([b"DCB1", b"REQUEST", msgpack.packb(dict(args, id=7, op=op))])
        if not sock.poll(5000):
            raise TimeoutError("no reply to %s" % op)
        return msgpack.unpackb(sock.recv_multipart()[2], raw=False)
    finally:
        sock.close()


def subscriber(*prefixes):
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for prefix in prefixes:
        sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.connect(bus.topics_ep)
    return sub


def receive(sub, until, timeout_s=5.0):
    """Messages (topic, body) from `sub` until until(topic, body) is true
    for one, or timeout_s; returns (the messages, whether it was found)."""
    got, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sub.poll(50):
            continue
        topic, body = sub.recv_multipart()
        got.append((topic.decode(), msgpack.unpackb(body, raw=False)))
        if until(*got[-1]):
            return got, True
    return got, False


def tasks_by_status():
    return {t["id"]: t["status"] for t in request("tasks")["result"]["tasks"]}


def wait_for(what, condition, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return bus.check(what, True)
        time.sleep(0.1)
    return bus.check(what, False, "not after %d s" % timeout_s)


# A long heartbeat: the played collector stays registered without one.
config = bus.write("bus.yaml", bus.config_head(heartbeat_ms=60000) + """workers:
  played:    {plugin: mock-source}
  sink:      {plugin: mock-storage, file: sink.txt}
  done_src:  {plugin: mock-source, records: 100}
  done_sink: {plugin: mock-storage, file: done.txt}
pipelines:
  live: {from: played, to: [sink]}
  done: {from: done_src, to: [done_sink]}
""")
bus.broker(config)
bus.check("the broker starts", bus.wait_log("broker", 'msg="broker listening"', 10))
bus.worker("done_sink", config)
bus.worker("done_src", config)
bus.check("the finished run's collector ends with exit 0", bus.wait("done_src", 20) == 0)
finished = []
wait_for("the finished run's two tasks are COMPLETED",
         lambda: len([i for i, s in tasks_by_status().items() if s == "COMPLETED"]) == 2)
finished = [i for i, s in tasks_by_status().items() if s == "COMPLETED"]

played = ctx.socket(zmq.DEALER)
played.setsockopt(zmq.LINGER, 0)
played.setsockopt(zmq.ROUTING_ID, b"played.0.1.late")
played.connect(bus.bus_ep)
played.send_multipart([b"DCB1", b"HELLO", msgpack.packb(
    {"role": "collector", "instance": "played", "plugin": "mock-source", "replica": 0,
     "abi": abi_version(), "credit": 16, "run": RUN})])
ready = played.poll(5000) and played.recv_multipart()[1] == b"READY"
bus.check("the played collector is registered (READY)", ready)
running = {RUN: "collection", RUN + "/live": "pipeline"}
wait_for("its run's two tasks are RUNNING",
         lambda: all(tasks_by_status().get(i) == "RUNNING" for i in running))

reply = request("session_start", type="observation", meta={"target": "M31"})
bus.check("an observation session starts", reply.get("ok"), str(reply))
session_id = reply["result"]["id"]

# --- Subscribers that join now.
sessions = subscriber(b"session.")
got, found = receive(sessions, lambda t, b: t.startswith("session."))
bus.check("a late session. subscriber gets the active session's session.start",
          found and got[-1][0] == "session.start.observation" and got[-1][1]["id"] == session_id,
          str(got))
bus.check("... with its metadata and status", found and got[-1][1]["meta"] == {"target": "M31"}
          and got[-1][1]["status"] == "active", str(got[-1:]))
extra, _ = receive(sessions, lambda t, b: False, 0.5)
bus.check("... and no other session message (the sessions before are over)", extra == [],
          str(extra))

tasks = subscriber(b"task.")
seen = {}
got, found = receive(tasks, lambda t, b: seen.update({b["id"]: t}) or set(running) <= set(seen))
bus.check("a late task. subscriber gets each running task",
          found and all(seen[i] == "task.RUNNING." + i for i in running), str(seen))
bus.check("... with its TaskInfo", all(b["status"] == "RUNNING" and b["type"] == running[b["id"]]
                                       for t, b in got if b["id"] in running), str(got))
extra, _ = receive(tasks, lambda t, b: False, 0.5)
old = [t for t, b in got + extra if b["id"] in finished]
bus.check("... and nothing of the finished run", old == [] and len(finished) == 2,
          "%s (finished: %s)" % (old, finished))

everything = subscriber(b"")
want = {"session.start.observation"} | {"task.RUNNING." + i for i in running} | {"metrics"}
topics = set()
got, found = receive(everything, lambda t, b: topics.add(t) or want <= topics)
bus.check("a subscriber to everything gets the session, the tasks and the metrics", found,
          str(sorted(topics)))

metrics = subscriber(b"metrics")
got, found = receive(metrics, lambda t, b: True)
bus.check("a metrics subscriber gets the metrics",
          found and got[0][0] == "metrics" and "uptime_s" in got[0][1], str(got))
# A subscription to one task's topic marks, in the stream of the subscriber
# to everything, the point after which the broker has handled the metrics
# one; in between it must have published no session or task message.
live = "task.RUNNING.%s/live" % RUN
one_task = subscriber(live.encode())
got, found = receive(everything, lambda t, b: t == live)
state = [t for t, b in got if t.startswith(("session.", "task."))]
bus.check("the metrics subscription made the broker publish no session or task message,"
          " and one to a task's topic that task's only", found and state == [live], str(state))
got, found = receive(one_task, lambda t, b: True)
bus.check("... which its subscriber got", found and got[0][0] == live, str(got))
# A prefix subscribed before, subscribed again by another subscriber.
marker = subscriber(b"session.")
got, found = receive(marker, lambda t, b: True)
bus.check("a repeated subscription to a prefix is answered too",
          found and got[0][0] == "session.start.observation", str(got))
got, found = receive(everything, lambda t, b: t == "session.start.observation")
bus.check("... and those subscribed before get the value again", found,
          str([t for t, b in got]))

# --- A clean stop ends the session.
bus.check("the broker stops cleanly on SIGTERM", bus.stop("broker") == 0)
got, found = receive(sessions, lambda t, b: t.startswith("session.end."))
bus.check("at a clean stop session.end arrives for the active session",
          found and got[-1][0] == "session.end.observation" and got[-1][1]["id"] == session_id,
          str(got))
bus.check("... completed, with its end time", found and got[-1][1]["status"] == "completed"
          and got[-1][1]["end"], str(got[-1:]))
for sock in (sessions, tasks, everything, metrics, one_task, marker):
    sock.close()

# --- Started again: the task table's running tasks are state from the start.
bus.broker(config)
bus.check("the broker starts again", bus.wait_log("broker", 'msg="broker listening"', 10))
tasks = subscriber(b"task.")
seen = {}
got, found = receive(tasks, lambda t, b: seen.update({b["id"]: t}) or set(running) <= set(seen))
bus.check("after a restart, a task. subscriber gets the tasks the table has running",
          found and all(seen[i] == "task.RUNNING." + i for i in running), str(seen))
tasks.close()
played.close()
bus.finish()
