"""test_critical_error.py -- a critical error puts its pipeline in ERROR.

mock-source -> mock-processor (mode: critical, which reports a critical
PROCESSING error for every batch and passes it on) -> mock-storage.  A
subscriber to event.ERROR_OCCURRED. must see the event for the pipeline,
the broker's stats must show the pipeline's status ERROR, and the data
must still arrive: a critical error is reported, not a reason to drop.
A second pipeline without the critical step stays out of ERROR.
"""

import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RECORDS = 200

bus = lib.Bus()
config = bus.write("c.yaml", bus.config_head() + """
workers:
  src:   {plugin: mock-source, records: %d, batch: 10, stream: s}
  crit:  {plugin: mock-processor, mode: critical}
  sink:  {plugin: mock-storage, file: sink.txt}
  src2:  {plugin: mock-source, records: %d, batch: 10, stream: s2}
  sink2: {plugin: mock-storage, file: sink2.txt}
pipelines:
  bad:  {from: src, through: [crit], to: [sink]}
  good: {from: src2, to: [sink2]}
""" % (RECORDS, RECORDS))

sub = zmq.Context.instance().socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"event.ERROR_OCCURRED.")
sub.setsockopt(zmq.SUBSCRIBE, b"error.")
bus.broker(config)
sub.connect(bus.topics_ep)
time.sleep(0.3)
for name in ("sink", "crit", "sink2", "src", "src2"):
    bus.worker(name, config)

occurred, critical_errors = [], 0
deadline = time.monotonic() + 20
while time.monotonic() < deadline and (bus.wait("src", 0) is None or bus.wait("src2", 0) is None
                                       or not occurred):
    if sub.poll(100):
        topic, body = sub.recv_multipart()
        msg = msgpack.unpackb(body, raw=False)
        if topic.startswith(b"event.ERROR_OCCURRED."):
            occurred.append((topic.decode(), msg))
        elif msg.get("is_critical"):
            critical_errors += 1

bus.check("the collectors finished", bus.wait("src", 5) == 0 and bus.wait("src2", 5) == 0)
bus.check("ERROR_OCCURRED raised for pipeline 'bad'",
          any(t == "event.ERROR_OCCURRED.bad" for t, _ in occurred), str([t for t, _ in occurred][:3]))
bus.check("no ERROR_OCCURRED for pipeline 'good'",
          not any(t == "event.ERROR_OCCURRED.good" for t, _ in occurred))
bus.check("the event carries the error",
          any(m.get("data", {}).get("is_critical") for _, m in occurred))
bus.check("critical errors published on error.*", critical_errors > 0, str(critical_errors))

stats = lib.stats(bus.bus_ep)
status = {p["name"]: p["status"] for p in stats.get("pipelines", [])}
bus.check("stats: pipeline 'bad' is ERROR", status.get("bad") == "ERROR", str(status))
bus.check("stats: pipeline 'good' is not ERROR", status.get("good") in ("IDLE", "RUNNING"),
          str(status))

for sink in ("sink", "sink2"):
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline:
        if os.path.exists(bus.path(sink + ".txt")):
            with open(bus.path(sink + ".txt")) as f:
                lines = f.read().split()
            if len(lines) >= RECORDS:
                break
        time.sleep(0.1)
    ns = sorted(int(line.rsplit(",", 1)[1]) for line in lines)
    bus.check("%s got every record once" % sink, ns == list(range(RECORDS)), "%d rows" % len(ns))

bus.finish()
