"""test_metadata_csv.py -- ticker -> metadata -> csv through the real broker:
the quality fields each stored row carries are what its own columns say.

The ticker makes 2,000 ticks (two symbols, alternating, batches of 100)
whose `ts` starts a minute in the past.  The metadata processor checks a
declared schema of the six tick fields with ranges price >= 0 and
volume <= 50 (about half the ticks have a larger volume), keeps invalid
records, and counts duplicates on `symbol` in a window of 4 records.
Read back with Python's csv module, for every row:
  - the `metadata` column is JSON with schema_id (the same 16 hex digits
    on every row), quality_indicators, source_attributes, is_valid and
    validation_errors;
  - completeness and type_conformity are 1; range_conformity is 1 or 1/2
    and is_valid true exactly when the row's volume is <= 50, with an
    error naming volume otherwise;
  - freshness_s is the collection time minus ts: at least the minute
    ts lags by, and not more than the test has run since;
  - duplicates_seen is min(2, n // 2): the window of 4 holds the last two
    records of the same symbol once there are two;
  - source_attributes: stream prices, collector ticks, and the seq and
    index that place the row (n = 100 * (seq - first seq) + index);
  - n = 0..1999 in order, each once; and the processor's own counts,
    logged at its stop, equal the rows' valid and invalid counts.
"""

import csv
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS, BATCH, LAG_S = 2000, 100, 60

bus = lib.Bus()
t_start = time.time()
start_ts = int((t_start - LAG_S) * 1e6)
config = bus.write("m.yaml", bus.config_head() + """
workers:
  ticks: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: %d, batch: %d,
          orderbook: false, seed: 1, start_ts: %d, step_us: 1000}
  meta:
    plugin: metadata
    schema: {symbol: string, ts: int, n: int, price: {type: float, min: 0},
             volume: float, quote_volume: float}
    ranges: {volume: {max: 50}}
    time_field: ts
    time_unit: us
    dedup_fields: [symbol]
    dedup_window: 4
    on_invalid: keep
  csv: {plugin: csv, dir: csv}
pipelines:
  p: {from: ticks, through: [meta], to: [csv]}
""" % (TICKS, BATCH, start_ts))

bus.broker(config)
for name in ("csv", "meta", "ticks"):
    bus.worker(name, config)
bus.check("the ticker finishes", bus.wait("ticks", 30) == 0)
ok, left = bus.wait_delivered(30)
bus.check("every batch is delivered", ok, str(left))
t_end = time.time()
bus.check("the processor stops cleanly", bus.stop("meta") == 0)

files = [os.path.join(root, f) for root, _, names in os.walk(bus.path("csv"))
         for f in names if f == "prices.csv"]
bus.check("one prices.csv", len(files) == 1, str(files))
if len(files) != 1:
    bus.finish()
ok, message = lib.check_n(files[0], TICKS)
bus.check("n = 0..%d in order, each once" % (TICKS - 1), ok, message)

with open(files[0], newline="") as f:
    rows = list(csv.DictReader(f))

problems = []
ids, first_seq, valid = set(), None, 0


def problem(row, what):
    if len(problems) < 10:
        problems.append("n=%s: %s" % (row.get("n"), what))


for row in rows:
    try:
        meta = json.loads(row["metadata"])
    except (KeyError, ValueError) as e:
        problem(row, "metadata column is not JSON: %s" % e)
        continue
    n, volume = int(row["n"]), float(row["volume"])
    q, src = meta["quality_indicators"], meta["source_attributes"]
    ids.add(meta["schema_id"])
    if q["completeness"] != 1.0 or q["type_conformity"] != 1.0:
        problem(row, "completeness %s, type_conformity %s" % (q["completeness"],
                                                             q["type_conformity"]))
    in_range = volume <= 50
    if meta["is_valid"] is not in_range:
        problem(row, "is_valid %s with volume %s" % (meta["is_valid"], volume))
    if q["range_conformity"] != (1.0 if in_range else 0.5):
        problem(row, "range_conformity %s with volume %s" % (q["range_conformity"], volume))
    errors = meta["validation_errors"]
    if in_range != (errors == []) or (errors and "'volume'" not in errors[0]):
        problem(row, "validation_errors %s" % errors)
    valid += meta["is_valid"] is True
    # collection time (the batch's) - ts, ts = start_ts + n ms
    lo = LAG_S - 1 - n * 1e-3
    hi = (t_end - t_start) + LAG_S + 1
    if not (lo <= q["freshness_s"] <= hi):
        problem(row, "freshness_s %s not within [%.3f, %.3f]" % (q["freshness_s"], lo, hi))
    if q["duplicates_seen"] != min(2, n // 2):
        problem(row, "duplicates_seen %s, expected %d" % (q["duplicates_seen"], min(2, n // 2)))
    if first_seq is None:
        first_seq = src["seq"] - n // BATCH
    if (src["stream"], src["collector"]) != ("prices", "ticks") or \
            n != BATCH * (src["seq"] - first_seq) + src["index"]:
        problem(row, "source_attributes %s" % src)

bus.check("every row's quality fields match its columns", not problems,
          "; ".join(problems) or "%d rows" % len(rows))
bus.check("one schema_id of 16 hex digits", len(ids) == 1 and
          all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids), str(ids))
bus.check("some rows valid, some not", 0 < valid < len(rows), "%d valid" % valid)

counts = re.search(r"checked=(\d+) valid=(\d+) invalid=(\d+) dropped=(\d+)", bus.log("meta"))
bus.check("the processor's counts are the rows'", counts is not None and
          tuple(map(int, counts.groups())) == (len(rows), valid, len(rows) - valid, 0),
          counts.group(0) if counts else "no counts in its log")
bus.finish()
