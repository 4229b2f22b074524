"""test_asdf_session.py -- camera, telemetry, logs and events on a real bus
into the asdf sink, the sink and then the broker killed with -9 during the
session: the session's file, opened by python3-asdf (the reference
implementation) with validation on, is complete and exact.

An `observation` session (target M31, a location) is started; a 48x32
uint16 camera (240 frames, 2 a batch, paced), the telemetry (3 streams of
200 samples) and two http-listen endpoints for logs and events feed the
asdf sink.  Once frames are staged the sink is killed -9 and started
again; later the broker is killed -9 and started again.  Then the session
is ended, and the checks:
  - one file, <dir>/YYYY/MM/DD/observation_m31_<stamp> (target lower-cased as in seed 003).asdf, no staging
    left, no half-written file anywhere;
  - asdf.open (validation on) reads it: meta as the session was described,
    summary frame counts;
  - cameras/main/frames is uint16 [240, 32, 48], every frame equal to the
    one the camera README's formula gives;
  - telemetry columns n, ts and values equal to the README's formulas;
  - observability logs and events exactly as posted, in order;
  - the live catalog has the session's row with the file's path, and
    `dcbus catalog rebuild` gives the same rows.
With --external (test_asdf_session_external.py) the sink has
external_frames: true: the frames are in <stem>.frames/main.asdf next to
the file, which refers to it and does not hold them; python3-asdf reads
them through it; the catalog takes neither the frames file nor its folder
for a session.
"""

import glob
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

import asdf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from instruments_ref import frame, jitter  # noqa: E402

EXTERNAL = "--external" in sys.argv[1:]

FRAMES, SAMPLES = 240, 200
W, H, SEED = 48, 32, 5
START_TS = 1765749600000000




LOGS_PORT, EVENTS_PORT = lib.free_port(), lib.free_port()
bus = lib.Bus()
data = bus.path("data")
config = bus.write("c.yaml", bus.config_head() + """
workers:
  cam: {plugin: camera, camera: main, width: %d, height: %d, dtype: uint16, rate: 120,
        batch: 2, limit: %d, seed: %d, exposure_us: 312000, gain: 200, start_ts: %d,
        step_us: 1000}
  tel: {plugin: telemetry, rate: 100, limit: %d, batch: 5, seed: 2, start_ts: %d,
        step_us: 1000000}
  logs: {plugin: http-listen, port: %d, path: /logs, stream: logs, keys_dir: %s}
  events: {plugin: http-listen, port: %d, path: /events, stream: events, keys_dir: %s}
  archive: {plugin: asdf, dir: %s%s}
pipelines:
  frames: {from: cam, to: [archive]}
  tele: {from: tel, to: [archive]}
  logs: {from: logs, to: [archive]}
  events: {from: events, to: [archive]}
""" % (W, H, FRAMES, SEED, START_TS, SAMPLES, START_TS, LOGS_PORT, bus.path("keys", "logs"), EVENTS_PORT,
       bus.path("keys", "events"), data,
       ", external_frames: true" if EXTERNAL else ""))


def wait_for(cond, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def post(port, path, record):
    body = json.dumps(record).encode()
    for _ in range(100):
        try:
            req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=35) as r:
                return r.status == 200
        except OSError:
            time.sleep(0.1)
    return False


def staged_frame_bytes():
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(data, ".staging", "*", "cam-*")))


def request(op, **args):
    return lib.request(bus.bus_ep, op, args, timeout_s=10)


bus.broker(config)
bus.worker("archive", config)
bus.wait_log("broker", 'msg="worker joined" instance=archive', 10)
for name in ("logs", "events"):
    bus.worker(name, config)
meta = {"target": "M31", "observer": "kim", "location": "45.5,-122.6,100"}
reply = request("session_start", type="observation", meta=meta)
bus.check("the observation starts", reply.get("ok"), reply)
session = reply["result"]["id"]
logs = [{"time": "2025-12-14T22:00:0%dZ" % i, "level": "INFO", "source": "mcp",
         "message": "line %d" % i, "context": {"i": i}} for i in range(6)]
events = [{"time": "2025-12-14T22:00:01Z", "event": "tracking_lost", "details": {"s": 3}},
          {"time": "2025-12-14T22:00:02Z", "event": "cloud_detected", "details": {"c": 0.8}}]
bus.check("logs posted", all(post(LOGS_PORT, "/logs", r) for r in logs[:3]))
bus.check("an event posted", post(EVENTS_PORT, "/events", events[0]))
bus.worker("cam", config)
bus.worker("tel", config)

# kill -9 of the sink once frames are staged
bus.check("frames are staged", wait_for(lambda: staged_frame_bytes() >= 40 * W * H * 2))
bus.procs["archive"].send_signal(signal.SIGKILL)
bus.procs["archive"].wait()
os.rename(bus.path("archive.log"), bus.path("archive.first.log"))
bus.worker("archive", config)
bus.check("logs posted while the sink was down", all(post(LOGS_PORT, "/logs", r)
                                                     for r in logs[3:5]))

# kill -9 of the broker later in the session
bus.check("more frames are staged", wait_for(lambda: staged_frame_bytes() >= 120 * W * H * 2))
bus.procs["broker"].send_signal(signal.SIGKILL)
bus.procs["broker"].wait()
os.rename(bus.path("broker.log"), bus.path("broker.first.log"))
bus.broker(config)
bus.check("the last log and event posted", post(LOGS_PORT, "/logs", logs[5])
          and post(EVENTS_PORT, "/events", events[1]))
bus.check("the camera finished", bus.wait("cam", 60) == 0)
bus.check("the telemetry finished", bus.wait("tel", 60) == 0)
delivered, in_flight = bus.wait_delivered(30)
bus.check("everything delivered", delivered, "in flight: %s" % in_flight)
reply = request("session_end")
bus.check("the observation ends", reply.get("ok"), reply)

files = []
bus.check("its file appears", wait_for(lambda: files.extend(
    glob.glob(os.path.join(data, "*", "*", "*", "observation_m31_*.asdf"))) or files))
bus.check("the staging folder of the session is gone",
          wait_for(lambda: not glob.glob(os.path.join(data, ".staging", "*" + session + "*"))),
          os.listdir(os.path.join(data, ".staging")) if os.path.isdir(
              os.path.join(data, ".staging")) else "")
stray = [p for p in glob.glob(os.path.join(data, "**", "*"), recursive=True)
         if os.path.isfile(p) and not p.endswith(".asdf") and "/catalog/" not in p]
bus.check("no other file where a reader looks", not stray, stray)
if not files:
    bus.finish()
path = files[0]
bus.check("one file for the session", len(files) == 1, files)
frames_dir = path[:-len(".asdf")] + ".frames"
if EXTERNAL:
    bus.check("the frames are in <stem>.frames/main.asdf",
              os.path.isdir(frames_dir) and os.listdir(frames_dir) == ["main.asdf"],
              os.listdir(os.path.dirname(path)))
    bus.check("the file does not hold them", os.path.getsize(path) < FRAMES * W * H * 2,
              os.path.getsize(path))
else:
    bus.check("no frames folder", not os.path.exists(frames_dir))

with asdf.open(path, validate_checksums=True) as af:
    m = af["meta"]
    bus.check("meta: session id and type", m["session_id"] == session
              and m["session_type"] == "observation", dict(m))
    bus.check("meta: the session's metadata", all(m.get(k) == v for k, v in meta.items()),
              dict(m))
    bus.check("meta: start and end times", m["start_time"].endswith("Z")
              and m["end_time"] >= m["start_time"], (m["start_time"], m["end_time"]))
    bus.check("summary: frames per camera", dict(af["summary"]["frames"]) == {"main": FRAMES},
              dict(af["summary"]))
    cam = af["cameras"]["main"]
    frames = np.asarray(cam["frames"])
    bus.check("frames: uint16 [N, H, W]", frames.dtype == np.uint16
              and frames.shape == (FRAMES, H, W), "%s %s" % (frames.dtype, frames.shape))
    order = None
    for key in ("frame_values", "values"):
        if key in cam and "frame" in cam[key]:
            order = [int(v) for v in np.asarray(cam[key]["frame"])]
    bus.check("frames in order, each once", order == list(range(FRAMES)),
              order[:10] if order else list(cam.keys()))
    bad = [n for n in range(min(FRAMES, frames.shape[0]))
           if not np.array_equal(frames[n], frame(n, W, H, "uint16", SEED))]
    bus.check("every frame equals the regenerated one", not bad and frames.shape[0] == FRAMES,
              "wrong: %s" % bad[:5])
    tel = af["telemetry"]
    for stream in ("mount_position", "temperature", "focus_position"):
        t = tel.get(stream) or tel.get("telemetry." + stream)
        if not bus.check("telemetry/%s present" % stream, t is not None, list(tel.keys())):
            continue
        ns = [int(v) for v in np.asarray(t["n"])]
        bus.check("telemetry/%s: samples 0..%d once, in order" % (stream, SAMPLES - 1),
                  ns == list(range(SAMPLES)), "%d rows" % len(ns))
        ts = np.asarray(t["ts"])
        ok = len(ts) == SAMPLES and all(int(ts[i]) == START_TS + ns[i] * 1000000
                                        for i in range(len(ns)))
        for i, n in enumerate(ns if ok else []):
            hours = n * 1000000 / 3.6e9
            if stream == "mount_position":
                p = 2 * math.pi * (n % 300) / 300
                ok = ok and abs(float(t["ra"][i]) - (10.6847 + 0.002 * math.sin(p)
                                                     + 0.0005 * jitter(2, n, 0))) < 1e-9
            elif stream == "temperature":
                ambient = 12.0 - 0.8 * hours + 0.05 * jitter(2, n, 2)
                ok = ok and abs(float(t["ambient"][i]) - ambient) < 1e-9
            else:
                ok = ok and int(t["position"][i]) == 25000 + int(math.floor(32 * hours + 0.5))
        bus.check("telemetry/%s: columns equal to the formulas" % stream, ok)
    obs = af["observability"]

    def plain(v):
        return json.loads(json.dumps(v, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                     else dict(o)))
    got_logs = [plain(r) for r in obs["logs"]]
    got_events = [plain(r) for r in obs["events"]]
    bus.check("observability/logs as posted, in order",
              [{k: r.get(k) for k in logs[0]} for r in got_logs] == logs, got_logs[:2])
    bus.check("observability/events as posted, in order",
              [{k: r.get(k) for k in events[0]} for r in got_events] == events, got_events)

db = os.path.join(data, "catalog", "catalog.sqlite")
row = None
if os.path.exists(db):
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT session_type, target, frames, path FROM sessions "
                        "WHERE session_id = ?", (session,)).fetchone()
bus.check("the live catalog has the session's row",
          row == ("observation", "M31", FRAMES, os.path.realpath(path)), row)


def catalog_rows():
    with sqlite3.connect(db) as c:
        return (c.execute("SELECT * FROM sessions ORDER BY session_id").fetchall(),
                c.execute("SELECT * FROM session_frames ORDER BY session_id, camera").fetchall())


live = catalog_rows()
rebuilt = subprocess.run([os.path.join(bus.bin, "dcbus"), "catalog", "rebuild", data],
                         capture_output=True, text=True)
bus.check("dcbus catalog rebuild: every session, no file skipped", rebuilt.returncode == 0
          and "%d session" % len(live[0]) in rebuilt.stdout
          and "0 files skipped" in rebuilt.stdout
          and "skipped" not in rebuilt.stderr, rebuilt.stdout + rebuilt.stderr)
bus.check("the rebuilt catalog has the same rows", catalog_rows() == live,
          (catalog_rows(), live))
bus.stop("archive")
bus.finish()
