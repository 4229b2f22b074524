"""test_instruments.py -- the synthetic camera and telemetry on a real bus,
each killed with -9 half way and started again: every frame and every
sample once, exactly as documented.

camera (32x24 uint16 at 150 frames/s, 450 frames) and telemetry (300
samples/s, 900 samples on three streams) -> csv.  Once each has sent part
of its run, it is killed with SIGKILL and started again; the broker hands
the restarted worker the position of the last batch it spooled.  Then
the checks:
  - the CSV of camera.main holds frames 0..449, each once, in order, and
    every frame's data (bytea hex) equals the frame regenerated in numpy
    from the formula in plugins/collectors/camera/README.md, with dtype,
    shape, exposure, gain and ts as documented;
  - each telemetry stream holds samples 0..899, each once, in order, with
    ts, ra, dec, temperatures and focuser position as the README's formulas
    give them;
  - each restarted worker says it resumed (not started afresh).
"""

import csv
import glob
import math
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from instruments_ref import frame, jitter  # noqa: E402

START_TS = 1765749600000000
FRAMES, SAMPLES = 450, 900
W, H, SEED = 32, 24, 7

bus = lib.Bus()
config = bus.write("c.yaml", bus.config_head() + """
workers:
  cam: {plugin: camera, camera: main, width: %d, height: %d, dtype: uint16, rate: 150,
        limit: %d, seed: %d, exposure_us: 312000, gain: 200, start_ts: %d, step_us: 1000}
  tel: {plugin: telemetry, rate: 300, limit: %d, batch: 5, seed: 2, start_ts: %d,
        step_us: 1000000}
  csv: {plugin: csv, dir: %s}
pipelines:
  frames: {from: cam, to: [csv]}
  tele: {from: tel, to: [csv]}
""" % (W, H, FRAMES, SEED, START_TS, SAMPLES, START_TS, bus.path("csv")))


def rows(stream):
    files = glob.glob(bus.path("csv", "*", stream + ".csv"))
    out = []
    for path in files:
        with open(path, newline="") as f:
            out += list(csv.DictReader(f))
    return out, len(files)


def wait_rows(stream, count, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(rows(stream)[0]) >= count:
            return True
        time.sleep(0.05)
    return False


def kill_and_restart(name, stream, at, total):
    """Waits until `at` rows of `stream` are stored, then kill -9 and start again."""
    bus.check("%s: %d rows stored before the kill" % (name, at), wait_rows(stream, at, 30))
    bus.procs[name].send_signal(signal.SIGKILL)
    bus.procs[name].wait()
    stored = len(rows(stream)[0])
    bus.check("%s: killed half way" % name, stored < total, "%d of %d rows" % (stored, total))
    os.rename(bus.path(name + ".log"), bus.path(name + ".first.log"))
    bus.worker(name, config)


bus.broker(config)
bus.worker("csv", config)
bus.wait_log("broker", 'msg="worker joined" instance=csv', 10)
bus.worker("cam", config)
bus.worker("tel", config)
kill_and_restart("cam", "camera.main", 100, FRAMES)
kill_and_restart("tel", "telemetry.mount_position", 200, SAMPLES)
bus.check("camera: the restarted worker finished", bus.wait("cam", 30) == 0)
bus.check("telemetry: the restarted worker finished", bus.wait("tel", 30) == 0)
delivered, in_flight = bus.wait_delivered(30)
bus.check("everything delivered", delivered, "in flight: %s" % in_flight)
bus.stop("csv")
bus.check("camera: the restarted worker resumed", "camera: resumed at frame" in bus.log("cam"))
bus.check("telemetry: the restarted worker resumed",
          "telemetry: resumed at samples" in bus.log("tel"))

# The camera.
got, nfiles = rows("camera.main")
bus.check("camera: one session, one file", nfiles == 1, "%d files" % nfiles)
indexes = [int(r["frame"]) for r in got]
bus.check("camera: frames 0..%d, each once, in order" % (FRAMES - 1),
          indexes == list(range(FRAMES)),
          "%d rows, first wrong at %s" % (len(indexes), next(
              (i for i, v in enumerate(indexes) if v != i), None)))
bad = []
for r in got:
    n = int(r["frame"])
    want = frame(n, W, H, "uint16", SEED)
    data = bytes.fromhex(r["data"][2:]) if r["data"].startswith("\\x") else b""
    pixels = np.frombuffer(data, dtype="<u2").reshape(H, W) if len(data) == W * H * 2 else None
    if (pixels is None or not np.array_equal(pixels, want) or r["dtype"] != "uint16"
            or r["shape"] != "[%d,%d]" % (H, W) or float(r["exposure"]) != 0.312
            or r["gain"] != "200" or int(r["ts"]) != START_TS + n * 1000
            or r["camera"] != "main"):
        bad.append(n)
bus.check("camera: every frame and its fields as documented", not bad and len(got) == FRAMES,
          "wrong: %s" % bad[:5] if bad else "%d frames regenerated with numpy" % len(got))

# The telemetry.
for stream in ("mount_position", "temperature", "focus_position"):
    got, _ = rows("telemetry." + stream)
    ns = [int(r["n"]) for r in got]
    bus.check("telemetry.%s: samples 0..%d, each once, in order" % (stream, SAMPLES - 1),
              ns == list(range(SAMPLES)), "%d rows" % len(ns))
    bad = []
    for r in got:
        n = int(r["n"])
        hours = n * 1000000 / 3.6e9
        ok = int(r["ts"]) == START_TS + n * 1000000
        if stream == "mount_position":
            p = 2 * math.pi * (n % 300) / 300
            ok = ok and abs(float(r["ra"]) - (10.6847 + 0.002 * math.sin(p)
                                              + 0.0005 * jitter(2, n, 0))) < 1e-9
            ok = ok and abs(float(r["dec"]) - (41.2690 + 0.001 * math.cos(p)
                                               + 0.0005 * jitter(2, n, 1))) < 1e-9
        elif stream == "temperature":
            ambient = 12.0 - 0.8 * hours + 0.05 * jitter(2, n, 2)
            ok = ok and abs(float(r["ambient"]) - ambient) < 1e-9
            ok = ok and abs(float(r["mirror"]) - (ambient + 1.5 * math.exp(-hours / 2)
                                                  + 0.02 * jitter(2, n, 3))) < 1e-9
        else:
            ok = ok and int(r["position"]) == 25000 + int(math.floor(40 * 0.8 * hours + 0.5))
        if not ok:
            bad.append(n)
    bus.check("telemetry.%s: values as the README's formulas give them" % stream, not bad,
              "wrong: %s" % bad[:5] if bad else "")
bus.finish()
