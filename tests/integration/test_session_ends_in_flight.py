"""test_session_ends_in_flight.py -- a session that ends while a collector
streams: the batches it sent before it heard of the end are in that
session's file, none lost and none twice.

1. A camera sends 1,000 frames a second, one a batch, into the asdf sink
   and mock-storage (sessions: true) while the session changes 30 times
   (observations of targets M0..M29, idle between).  A batch the camera
   sent just before it heard of an end was still on its way when the
   broker saw the end; the broker used to tell the sinks of the end at
   once (nothing of the session in its spool), the asdf sink had made
   the file by the time that batch came, and skipped it as late: a frame
   in no file.  Now the broker waits for each collector's SESSION_CLOSED,
   which a collector sends once every batch it sent before the end is
   acknowledged.  Checked: every frame the camera sent is in exactly one
   file (frame numbers 0..N-1, each once, each equal to the camera
   README's formula), each file holds what mock-storage was given under
   its session, and the sink skipped no late batch.
2. A collector that starts once the bus is stopping (`dcbus sessions
   close`) is told at once that the session in its READY ended, so it
   collects nothing under it; after the broker's restart it collects
   under the new session, and that session's file has all its frames
   from the first.
3. The broker killed -9 three times while the camera streams in an idle
   session.  Each restart ends that idle session, and the camera resends
   the batches the killed broker had not acknowledged, stamped with it:
   the broker used to settle the session at its start, before the camera
   was back, and the sink skipped them as late.  Now a collector's HELLO
   names the session of what it still has unacknowledged, and the broker
   settles nothing until the collectors are back (or the heartbeat
   time-out has passed) and have confirmed.  Checked again: every frame
   of the camera, over the whole test, in exactly one file.
4. A collector that does not confirm ends (an older host, or a client of
   its own, here a plain socket) sends a batch stamped with a session
   whose sinks were told it ended: it is carried and acknowledged, and
   also counted (stats: late_batches), logged and reported on
   error.VALIDATION.broker, since a sink may leave it out.
"""
import signal

import collections
import glob
import os
import re
import subprocess
import sys
import time

import asdf
import msgpack
import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from instruments_ref import frame  # noqa: E402

W, H, SEED = 16, 8, 3
CHANGES = 30

bus = lib.Bus()
data = bus.path("data")
config = bus.write("bus.yaml", bus.config_head() + """
workers:
  cam: {plugin: camera, camera: main, width: %d, height: %d, dtype: uint16, rate: 1000,
        batch: 1, seed: %d}
  late: {plugin: camera, camera: spot, width: %d, height: %d, dtype: uint16, rate: 200,
         batch: 1, seed: %d}
  old: {plugin: camera, camera: old}
  archive: {plugin: asdf, dir: %s}
  lines: {plugin: mock-storage, file: %s, sessions: true}
pipelines:
  frames: {from: cam, to: [archive, lines]}
  spotter: {from: late, to: [archive, lines]}
  olds: {from: old, to: [lines]}
""" % (W, H, SEED, W, H, SEED, data, bus.path("lines.csv")))


def dcbus(*args):
    p = subprocess.run([os.path.join(bus.bin, "dcbus")] + list(args) + ["--broker", bus.bus_ep],
                       cwd=bus.dir, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def files():
    return sorted(glob.glob(os.path.join(data, "[0-9]*", "*", "*", "*.asdf")))


def frames_by_session(camera):
    """{session id: [frame numbers]} of `camera` over every file."""
    out = {}
    for path in files():
        with asdf.open(path, validate_checksums=True) as af:
            cams = af.tree.get("cameras") or {}
            if camera not in cams:
                continue
            numbers = [int(n) for n in np.asarray(cams[camera]["frame_values"]["frame"])]
            pixels = np.asarray(cams[camera]["frames"])
            bad = [n for i, n in enumerate(numbers)
                   if not np.array_equal(pixels[i], frame(n, W, H, "uint16", SEED))]
            bus.check("%s: %s's frames exact" % (os.path.basename(path), camera), not bad, bad[:5])
            out[af["meta"]["session_id"]] = numbers
    return out


def given(camera_stream):
    """{session id: records} mock-storage took of a stream."""
    counts = collections.Counter()
    with open(bus.path("lines.csv")) as f:
        for line in f:
            if line.startswith("#") or not line.startswith(camera_stream + ","):
                continue
            counts[line.rstrip("\n").rsplit(",", 1)[1]] += 1
    return counts


def late_skipped():
    m = re.findall(r"(\d+) late batches skipped", bus.log("archive"))
    return int(m[-1]) if m else None


# ---------------------------------------------------------------------------
# 1. Sessions changing under a streaming camera

bus.broker(config)
bus.check("the sinks and the camera join", bus.joined(config, "archive", "lines", "cam"))
for i in range(CHANGES):
    ok = lib.request(bus.bus_ep, "session_start", {"type": "observation",
                                                   "meta": {"target": "M%d" % i}}).get("ok")
    time.sleep(0.03)  # frames under it: how many does not matter
    ok = lib.request(bus.bus_ep, "session_end", {"status": "completed"}).get("ok") and ok
    bus.check("session %d started and ended" % i, ok)
    time.sleep(0.03)
bus.check("the camera stops", bus.stop("cam") == 0)
bus.check("everything delivered", bus.wait_delivered(60)[0])
rc, out = dcbus("sessions", "close", "--wait", "30")
bus.check("sessions close --wait", rc == 0, out)

got = frames_by_session("main")
numbers = sorted(n for ns in got.values() for n in ns)
bus.check("a file for each session the camera sent frames in", len(got) >= CHANGES, len(got))
bus.check("frames were sent", len(numbers) > 100, len(numbers))
bus.check("every frame sent is in a file, once: 0..N-1",
          numbers == list(range(len(numbers))),
          "missing %s, twice %s" % (sorted(set(range(numbers[-1] + 1)) - set(numbers))[:10],
                                    [n for n, c in collections.Counter(numbers).items() if c > 1][:10])
          if numbers else "none")
lines = given("camera.main")
differ = {s: (len(got.get(s, [])), n) for s, n in lines.items() if len(got.get(s, [])) != n}
bus.check("each file holds what mock-storage was given under its session", not differ,
          list(differ.items())[:5])

# ---------------------------------------------------------------------------
# 2. A collector that starts while the bus is stopping

before = files()
bus.worker("late", config)
bus.check("the late camera hears at once that its session ended",
          bus.wait_log("late", 'msg="session ended: every batch sent under it is acknowledged"',
                       20), bus.log("late")[-400:])
bus.check("it sent nothing under the ended session",
          lib.instance_stats(lib.stats(bus.bus_ep), "late")["batches_out"] == 0)
bus.stop("archive")
bus.check("no late batch skipped by the sink", late_skipped() == 0, late_skipped())
bus.stop("lines")
bus.stop("broker")
os.rename(bus.path("broker.log"), bus.path("broker.first.log"))
os.rename(bus.path("archive.log"), bus.path("archive.first.log"))

bus.broker(config)
bus.worker("archive", config)
bus.worker("lines", config)
bus.check("the late camera collects after the restart",
          lib.wait_for(lambda: lib.instance_stats(lib.stats(bus.bus_ep), "late")
                       ["batches_out"] >= 50, 60))
bus.check("the late camera stops", bus.stop("late") == 0)
bus.check("everything delivered after the restart", bus.wait_delivered(60)[0])
rc, out = dcbus("sessions", "close", "--wait", "30")
bus.check("sessions close --wait after the restart", rc == 0, out)
spot = frames_by_session("spot")
bus.check("one new file, with the late camera's frames", len(files()) == len(before) + 1 and
          len(spot) == 1, (len(before), len(files()), list(spot)))
spot_numbers = sorted(n for ns in spot.values() for n in ns)
bus.check("all its frames, from the first", spot_numbers == list(range(len(spot_numbers))) and
          len(spot_numbers) >= 50, spot_numbers[:5])
bus.stop("archive")
bus.check("no late batch skipped after the restart", late_skipped() == 0, late_skipped())
os.rename(bus.path("archive.log"), bus.path("archive.second.log"))

# ---------------------------------------------------------------------------
# 3. The broker killed -9 under a streaming camera, in idle sessions

bus.stop("lines")
bus.stop("broker")  # a clean start: the session close above is over
os.rename(bus.path("broker.log"), bus.path("broker.second.log"))
bus.broker(config)
bus.worker("archive", config)
bus.worker("lines", config)


def cam_out():
    try:
        return lib.instance_stats(lib.stats(bus.bus_ep), "cam")["batches_out"]
    except (KeyError, RuntimeError, TimeoutError, OSError):
        return 0


bus.worker("cam", config)
for kill in range(3):
    bus.check("kill %d: the camera streams" % kill, lib.wait_for(lambda: cam_out() >= 100, 60))
    bus.procs["broker"].send_signal(signal.SIGKILL)
    bus.procs["broker"].wait()
    os.rename(bus.path("broker.log"), bus.path("broker.kill%d.log" % kill))
    bus.broker(config)
    bus.check("kill %d: the camera is back" % kill,
              bus.wait_log("broker", 'msg="worker joined" instance=cam', 30))
bus.check("after the kills: the camera streams", lib.wait_for(lambda: cam_out() >= 100, 60))
bus.check("the camera stops at last", bus.stop("cam") == 0)
bus.check("everything delivered after the kills", bus.wait_delivered(60)[0])
rc, out = dcbus("sessions", "close", "--wait", "30")
bus.check("sessions close --wait after the kills", rc == 0, out)
numbers = sorted(n for ns in frames_by_session("main").values() for n in ns)
bus.check("after the kills, every frame sent is in a file, once: 0..N-1",
          numbers == list(range(len(numbers))) and len(numbers) > 1000,
          "%d frames, missing %s, twice %s" % (
              len(numbers), sorted(set(range(numbers[-1] + 1)) - set(numbers))[:10],
              [n for n, c in collections.Counter(numbers).items() if c > 1][:10]))
bus.check("no late batch in the broker's count", lib.stats(bus.bus_ep)["late_batches"] == 0)
bus.stop("archive")
bus.check("no late batch skipped after the kills", late_skipped() == 0, late_skipped())

# ---------------------------------------------------------------------------
# 4. A batch of an ended session from a collector that does not confirm


def recv(sock, want, until=None, timeout_s=20):
    """The next `want` command's body from the broker (others skipped), or
    with `until`, True once until() holds; heartbeats go out meanwhile, as
    a live worker's do."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.send_multipart([b"DCB1", b"HEARTBEAT", msgpack.packb({})])
        if until and until():
            return True
        if sock.poll(50):
            frames = sock.recv_multipart()
            if not until and frames[1] == want:
                return msgpack.unpackb(frames[2], raw=False)
    return None


bus.stop("broker")
os.rename(bus.path("broker.log"), bus.path("broker.third.log"))
bus.broker(config)
bus.check("the sink is back", bus.wait_log("broker", 'msg="worker joined" instance=lines', 30))
ctx = zmq.Context.instance()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"error.")
sub.connect(bus.topics_ep)
old = ctx.socket(zmq.DEALER)
old.setsockopt(zmq.LINGER, 0)
old.setsockopt(zmq.IDENTITY, b"old-client")
old.connect(bus.bus_ep)
old.send_multipart([b"DCB1", b"HELLO", msgpack.packb(
    {"role": "collector", "instance": "old", "plugin": "x", "replica": 0, "abi": 2 << 16,
     "credit": 4})])
ready = recv(old, b"READY")
bus.check("the plain collector registers", ready is not None and ready.get("session"), ready)
ended = ready["session"] if ready else ""
ok = lib.request(bus.bus_ep, "session_start", {"type": "observation"}).get("ok")
bus.check("its session ends (a new one starts)", ok)
bus.check("the sink is told it ended",
          recv(old, None, lambda: ("#close,%s," % ended) in open(bus.path("lines.csv")).read()))
old.send_multipart([b"DCB1", b"DATA", msgpack.packb(
    {"v": 1, "stream": "old.s", "seq": 1, "session": ended, "source": "old", "ts": 0,
     "records": [{"n": 1}]})])
ack = recv(old, b"ACK")
bus.check("the late batch is carried and acknowledged", ack is not None and ack.get("seq") == 1,
          ack)
bus.check("stats: late_batches counts it", lib.stats(bus.bus_ep)["late_batches"] == 1)
errors, deadline = [], time.monotonic() + 5
while time.monotonic() < deadline and sub.poll(500):
    topic, body = sub.recv_multipart()
    errors.append((topic.decode(), msgpack.unpackb(body, raw=False)))
late = [e for t, e in errors if t.startswith("error.VALIDATION.broker") and
        "came after that session ended" in str(e)]
bus.check("error.VALIDATION.broker names it", len(late) == 1, errors)
bus.check("the broker's log says so", "batch of an ended session" in bus.log("broker"))
rc, out = dcbus("stats")
bus.check("dcbus stats says so", rc == 0 and "late: 1 batch of sessions" in out, out)
rc, out = dcbus("stats", "--json")
bus.check("dcbus stats --json counts it", rc == 0 and '"late_batches":1,' in out, out)
old.close()
sub.close()
bus.finish()
