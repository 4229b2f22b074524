"""test_session_end_backlog.py -- a sink with `critical: false` hears of a
session's end through its backlog, after the batches of it it missed.

The asdf sink is the non-critical one here, beside mock-storage: it stops
in the middle of an observation while the camera goes on, the observation
ends (mock-storage has it all, so the session settles), and the asdf sink
starts again.  Its backlog then feeds it the frames it missed and, after
them, the session's end.  Before, its READY listed the ended session at
once: it made the file from the frames it had, and skipped those its
backlog brought afterwards as late.  Checked: the observation's file has
every frame mock-storage took under it (frame numbers contiguous, each
equal to the camera README's formula), python3-asdf opens it, and the sink
skipped no late batch.
"""

import collections
import glob
import os
import re
import sys

import asdf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from instruments_ref import frame  # noqa: E402

W, H, SEED = 16, 8, 9

bus = lib.Bus()
data = bus.path("data")
config = bus.write("bus.yaml", bus.config_head() + """
workers:
  cam: {plugin: camera, camera: main, width: %d, height: %d, dtype: uint16, rate: 500,
        batch: 1, seed: %d}
  archive: {plugin: asdf, dir: %s, critical: false}
  lines: {plugin: mock-storage, file: %s, sessions: true}
pipelines:
  frames: {from: cam, to: [archive, lines]}
""" % (W, H, SEED, data, bus.path("lines.csv")))


def stat(instance, key):
    try:
        return lib.instance_stats(lib.stats(bus.bus_ep), instance)[key]
    except (KeyError, RuntimeError, TimeoutError, OSError):
        return 0


def lines_of(session):
    with open(bus.path("lines.csv")) as f:
        text = f.read()
    records = sum(1 for line in text.splitlines()
                  if line.startswith("camera.main,") and line.endswith("," + session))
    return records, ("#close,%s," % session) in text


def file_of(session):
    for path in glob.glob(os.path.join(data, "[0-9]*", "*", "*", "*.asdf")):
        with asdf.open(path) as af:
            if af["meta"]["session_id"] == session:
                return path
    return None


bus.broker(config)
bus.check("the sinks join", bus.joined(config, "archive", "lines"))
reply = lib.request(bus.bus_ep, "session_start", {"type": "observation", "meta": {"target": "M31"}})
bus.check("an observation starts", reply.get("ok"), reply)
session = reply["result"]["id"]
bus.worker("cam", config)
bus.check("the asdf sink takes frames", lib.wait_for(lambda: stat("archive", "records_in") >= 100, 60))
bus.check("the asdf sink stops", bus.stop("archive") == 0)
os.rename(bus.path("archive.log"), bus.path("archive.first.log"))
taken = lines_of(session)[0]
bus.check("the camera goes on without it",
          lib.wait_for(lambda: lines_of(session)[0] >= taken + 300, 60))
reply = lib.request(bus.bus_ep, "session_end", {"status": "completed"})
bus.check("the observation ends", reply.get("ok"), reply)
bus.check("mock-storage, the critical sink, is told it ended",
          lib.wait_for(lambda: lines_of(session)[1], 30))
bus.check("the camera stops", bus.stop("cam") == 0)

bus.worker("archive", config)
bus.check("the observation's file appears once the backlog is fed",
          lib.wait_for(lambda: file_of(session) is not None, 60))
path = file_of(session)
sent = lines_of(session)[0]
if path:
    with asdf.open(path, validate_checksums=True) as af:
        numbers = [int(n) for n in np.asarray(af["cameras"]["main"]["frame_values"]["frame"])]
        pixels = np.asarray(af["cameras"]["main"]["frames"])
        bus.check("every frame mock-storage took under the observation",
                  len(numbers) == sent and sent > taken, "%d in the file, %d sent" % (
                      len(numbers), sent))
        bus.check("frame numbers contiguous, none twice",
                  numbers == list(range(numbers[0], numbers[0] + len(numbers))),
                  [n for n, c in collections.Counter(numbers).items() if c > 1][:5])
        bad = [n for i, n in enumerate(numbers)
               if not np.array_equal(pixels[i], frame(n, W, H, "uint16", SEED))]
        bus.check("each frame exact", not bad, bad[:5])
bus.check("everything delivered", bus.wait_delivered(60)[0])
bus.stop("archive")
m = re.findall(r"(\d+) late batches skipped", bus.log("archive"))
bus.check("the asdf sink skipped no late batch", m and int(m[-1]) == 0, m)
bus.finish()
