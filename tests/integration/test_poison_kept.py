"""test_poison_kept.py -- with no error handler, a poison batch stays in the
spool.

mock-source (5 batches) -> mock-processor (mode: fail, every batch fails)
-> mock-storage, max_attempts 2, no error_handlers.  Checked:
  - each batch is given up after its attempts with an error on error.*
    saying the spool keeps it, and the pipeline carries nothing more;
  - the spool still holds the five batches (stats spool.kept and
    spool.batches), and nothing reached the sink;
  - a broker restart delivers them again;
  - once the step is fixed (mode: pass), the kept batches arrive, every
    record exactly once.
"""

import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RECORDS, BATCHES = 50, 5

bus = lib.Bus()


def config(mode):
    return bus.write("c-%s.yaml" % mode, bus.config_head(broker_extra=", max_attempts: 2") + """
workers:
  src:  {plugin: mock-source, records: %d, batch: %d, stream: s}
  step: {plugin: mock-processor, mode: %s}
  sink: {plugin: mock-storage, file: sink.txt}
pipelines:
  p: {from: src, through: [step], to: [sink]}
""" % (RECORDS, RECORDS // BATCHES, mode))


def spool_stats():
    return lib.stats(bus.bus_ep).get("spool", {})


def wait_kept(n, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if spool_stats().get("kept") == n:
                return True
        except TimeoutError:
            pass
        time.sleep(0.1)
    return False


failing = config("fail")
sub = zmq.Context.instance().socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"error.")
bus.broker(failing)
sub.connect(bus.topics_ep)
time.sleep(0.3)
for name in ("sink", "step", "src"):
    bus.worker(name, failing)

bus.check("the collector finishes (its batches are spooled)", bus.wait("src", 20) == 0)
bus.check("all %d batches are given up and kept" % BATCHES, wait_kept(BATCHES, 30),
          str(spool_stats()))
kept_errors = 0
while sub.poll(200):
    topic, body = sub.recv_multipart()
    if b"broker" in topic and "spool keeps it" in msgpack.unpackb(body, raw=False).get("message", ""):
        kept_errors += 1
bus.check("an error on error.* for each kept batch", kept_errors == BATCHES, str(kept_errors))
st = lib.stats(bus.bus_ep)
bus.check("the spool still holds them", st["spool"]["batches"] == BATCHES, str(st["spool"]))
bus.check("nothing is in flight any more", st["batches_in_flight"] == 0,
          str(st["batches_in_flight"]))
bus.check("nothing reached the sink", not os.path.exists(bus.path("sink.txt"))
          or os.path.getsize(bus.path("sink.txt")) == 0)

bus.stop("broker")
bus.start("broker2", os.path.join(bus.bin, "dcbus-broker"), "--config", failing)
bus.check("a restarted broker delivers them again",
          bus.wait_log("broker2", "batches_to_deliver=%d" % BATCHES, 10))
bus.check("and keeps them again after their attempts", wait_kept(BATCHES, 30), str(spool_stats()))

# The step is fixed: the kept batches go through.
bus.stop("broker2")
bus.stop("step")
fixed = config("pass")
bus.start("broker3", os.path.join(bus.bin, "dcbus-broker"), "--config", fixed)
bus.worker("step", fixed)
ok, left = bus.wait_delivered(30)
bus.check("once the step is fixed, the broker delivers everything", ok, str(left))
lines = []
deadline = time.monotonic() + 10
while time.monotonic() < deadline and len(lines) < RECORDS:
    if os.path.exists(bus.path("sink.txt")):
        with open(bus.path("sink.txt")) as f:
            lines = f.read().split()
    time.sleep(0.1)
bus.check("every record arrived exactly once", len(lines) == RECORDS
          and len(set(lines)) == RECORDS, "%d lines, %d distinct" % (len(lines), len(set(lines))))
bus.check("the spool is empty", spool_stats().get("batches") == 0, str(spool_stats()))
bus.finish()
