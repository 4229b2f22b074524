"""test_backlog_dual_write.py -- a non-critical sink's outage does not hold
up the pipeline, and it catches up afterwards, exactly once.

mock-source -> [csv (critical), store (mock-storage, critical: false)], the
dual write of seed 004 with a stand-in for the database.  The `store`
worker is not running at all while the collector runs: the collector must
still finish, the CSV must hold every record, and the broker's stats must
show the batches waiting in store's backlog on disk.  Then the broker is
restarted (the backlog must outlive it), `store` is started, and it must
end up with every record exactly once, in order, while the backlog empties.
"""

import csv
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RECORDS = 20000
BATCH = 100
# The record batches, and the end marker the source's host sends after its
# last one (an empty batch: it goes to every sink, to note its seq).
BATCHES = RECORDS // BATCH + 1

bus = lib.Bus()
config = bus.write("c.yaml", """broker: {bus: %s, topics: %s, heartbeat_ms: 200, spool: %s}
plugins_path: [%s]
workers:
  src:   {plugin: mock-source, records: %d, batch: %d, stream: s}
  csv:   {plugin: csv, dir: csv}
  store: {plugin: mock-storage, file: store.txt, critical: false}
pipelines:
  dual: {from: src, to: [csv, store]}
""" % (bus.bus_ep, bus.topics_ep, bus.path("spool"), bus.plugins, RECORDS, BATCH))

def backlog(stats):
    for b in stats.get("backlogs", []):
        if b["sink"] == "store":
            return b
    return None


def csv_rows():
    rows = []
    for path in glob.glob(bus.path("csv", "*", "s.csv")):
        with open(path) as f:
            rows += [int(r["n"]) for r in csv.DictReader(f)]
    return rows


def store_ns():
    if not os.path.exists(bus.path("store.txt")):
        return []
    with open(bus.path("store.txt")) as f:
        return [int(line.rsplit(",", 1)[1]) for line in f.read().split()]


bus.broker(config)
bus.worker("csv", config)
time.sleep(0.3)
bus.worker("src", config)
status = bus.wait("src", 30)
bus.check("the collector finished with the sink down", status == 0, "exit %s" % status)
deadline = time.monotonic() + 10
while time.monotonic() < deadline and len(csv_rows()) < RECORDS:
    time.sleep(0.1)
rows = csv_rows()
bus.check("the CSV has every record once while the sink is down",
          sorted(rows) == list(range(RECORDS)), "%d rows" % len(rows))
b = backlog(lib.stats(bus.bus_ep))
bus.check("stats: the sink's batches wait in its backlog",
          b is not None and b["batches"] == BATCHES, str(b))
bus.check("the backlog is on disk", os.path.getsize(bus.path("spool", "backlog", "store.log")) > 0)

bus.check("the broker stops on SIGTERM", bus.stop("broker") == 0)
bus.broker(config)
time.sleep(0.3)
b = backlog(lib.stats(bus.bus_ep))
bus.check("the backlog outlives a broker restart",
          b is not None and b["batches"] == BATCHES, str(b))

bus.worker("store", config)
deadline = time.monotonic() + 30
while time.monotonic() < deadline and len(store_ns()) < RECORDS:
    time.sleep(0.1)
time.sleep(0.5)  # anything doubled would arrive now
ns = store_ns()
bus.check("the sink caught up: every record exactly once", sorted(ns) == list(range(RECORDS)),
          "%d rows, %d distinct" % (len(ns), len(set(ns))))
bus.check("in order", ns == sorted(ns))
b = backlog(lib.stats(bus.bus_ep))
bus.check("the backlog is empty again", b is not None and b["batches"] == 0 and b["in_flight"] == 0,
          str(b))
bus.finish()
