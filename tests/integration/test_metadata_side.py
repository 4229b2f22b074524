"""test_metadata_side.py -- ticker -> metadata (output: side) -> csv through
the real broker, the metadata worker killed with SIGKILL once mid-flow:
the ticks are stored unchanged and their metadata on prices.metadata, one
row per tick.

The ticker makes 60,000 ticks (two symbols, batches of 500) at 20,000
ticks/s; the metadata processor checks a declared schema with
volume <= 50 and puts {stream, seq, index, metadata} on the side stream.
Read back with Python's csv module:
  - prices.csv: n = 0..59999, each once, with no metadata column;
  - prices.metadata.csv: one row per tick, each (seq, index) once, every
    row's stream `prices`, and its is_valid what the tick's volume says
    (joined on (seq, index): the ticker's n is 500 * (seq - first seq) +
    index, the ticks in order);
  - the worker was killed while the ticker ran.
"""

import csv
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS, BATCH = 60000, 500

bus = lib.Bus()
config = bus.write("m.yaml", bus.config_head() + """
workers:
  ticks: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: %d, batch: %d, rate: 20000,
          orderbook: false, seed: 3, start_ts: 1700000000000000, step_us: 1000}
  meta:
    plugin: metadata
    schema: {symbol: string, ts: int, n: int, price: {type: float, min: 0},
             volume: float, quote_volume: float}
    ranges: {volume: {max: 50}}
    time_field: ""
    output: side
  csv: {plugin: csv, dir: csv}
pipelines:
  p: {from: ticks, through: [meta], to: [csv]}
""" % (TICKS, BATCH))

bus.broker(config)
for name in ("csv", "meta", "ticks"):
    bus.worker(name, config)
time.sleep(1.5)
running = bus.procs["ticks"].poll() is None
bus.procs["meta"].send_signal(signal.SIGKILL)
bus.procs["meta"].wait()
bus.start("meta.1", os.path.join(bus.bin, "dcbus-worker"), "--instance", "meta", "--config",
          config)
bus.check("the metadata worker was killed while the ticker ran", running)
bus.check("the ticker finishes", bus.wait("ticks", 30) == 0)
ok, left = bus.wait_delivered(30)
bus.check("every batch is delivered", ok, str(left))
bus.check("the metadata worker stops cleanly", bus.stop("meta.1") == 0)


def rows_of(name):
    out = []
    for root, _, files in os.walk(bus.path("csv")):
        for f in files:
            if f == name:
                with open(os.path.join(root, f), newline="") as fh:
                    out.extend(csv.DictReader(fh))
    return out


ticks = rows_of("prices.csv")
ns = sorted(int(t["n"]) for t in ticks)
bus.check("n = 0..%d, each once" % (TICKS - 1), ns == list(range(TICKS)), "%d rows" % len(ns))
bus.check("the ticks carry no metadata column", ticks and "metadata" not in ticks[0])
meta = rows_of("prices.metadata.csv")
keys = [(int(m["seq"]), int(m["index"])) for m in meta]
bus.check("one metadata row per tick", len(meta) == TICKS and len(set(keys)) == TICKS,
          "%d rows, %d distinct" % (len(meta), len(set(keys))))
first = min(k[0] for k in keys) if keys else 0
volume = {int(t["n"]): float(t["volume"]) for t in ticks}
problems = []
for m, (seq, index) in zip(meta, keys):
    n = BATCH * (seq - first) + index
    md = json.loads(m["metadata"])
    if m["stream"] != "prices" or n not in volume or md["is_valid"] is not (volume[n] <= 50):
        problems.append("seq %d index %d: %s %s" % (seq, index, m["stream"], md.get("is_valid")))
bus.check("each metadata row is its tick's", not problems, "; ".join(problems[:5]))
bus.finish()
