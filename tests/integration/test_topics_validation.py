"""test_topics_validation.py -- one VALIDATION error per invalid record, on
the error. topics, while the valid records keep flowing to storage.

ticker (50,000 ticks at 25,000 a second, and the 5,000 order-book
snapshots they make due) -> json-validate (required: [price]) -> csv.
Order-book records have no price, so every one of them is invalid and
every price record valid.  `dcbus watch error. metrics --json` is the
subscriber.  It checks that

  - exactly one error.VALIDATION.processing message arrives per invalid
    record -- the n of the records named in the errors are 0..4999, once
    each -- and no other error;
  - each carries what the protocol promises: error_type, layer_name, the
    instance that raised it (validate), operation, message, not critical, the batch's stream and seq, and
    details {field: price, expected: present, got: missing, record} where
    record is the invalid record itself;
  - valid data kept flowing while the errors came: the CSV grew between
    the first errors and the last, and ends with the 50,000 price rows,
    n = 0..49,999 in order, and no order-book row;
  - the broker dropped no topic message (so the count above is exact).
"""

import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS = 50000
BOOKS = TICKS // 10

bus = lib.Bus()
# The bus's processes run in bus.dir: the broker's spool is inside it.
config = bus.write("bus.yaml", bus.config_head() + """workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: %d, rate: 25000,
           batch: 500, seed: 9}
  validate: {plugin: json-validate, required: [price]}
  csv: {plugin: csv, dir: %s}
pipelines:
  ticks: {from: ticker, through: [validate], to: [csv]}
""" % (TICKS, bus.path("csv")))

dcbus = os.path.join(bus.bin, "dcbus")
bus.broker(config)
bus.start("watch", dcbus, "watch", "--config", config, "error.", "metrics", "--json")
if not bus.check("dcbus watch receives the metrics topic",
                 bus.wait_log("watch", '"topic":"metrics"', 10)):
    bus.finish()
bus.worker("csv", config)
bus.worker("validate", config)
for name in ("csv", "validate"):
    bus.check("%s joins the broker" % name,
              bus.wait_log("broker", 'msg="worker joined" instance=%s ' % name, 10))


def csv_rows():
    """Price rows written so far (lines of the file but its header)."""
    files = glob.glob(bus.path("csv", "*", "prices.csv"))
    if not files:
        return 0
    with open(files[0], "rb") as f:
        return max(0, f.read().count(b"\n") - 1)


def errors_seen():
    return bus.log("watch").count('"topic":"error.')


# While the run goes on: how far the errors and the CSV have come.
bus.worker("ticker", config)
samples = []
deadline = time.monotonic() + 60
while bus.wait("ticker", 0) is None and time.monotonic() < deadline:
    samples.append((errors_seen(), csv_rows()))
    time.sleep(0.05)
bus.check("the ticker ends by itself with exit 0", bus.wait("ticker", 5) == 0)
deadline = time.monotonic() + 10
while (errors_seen() < BOOKS or csv_rows() < TICKS) and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.3)  # anything beyond the expected count would show now
bus.procs["watch"].send_signal(2)
bus.check("dcbus watch ends cleanly on SIGINT", bus.wait("watch", 5) == 0)

errors = []
for line in bus.log("watch").splitlines():
    if line.startswith("{"):
        msg = json.loads(line)
        if msg["topic"].startswith("error."):
            errors.append(msg)
topics = sorted(set(m["topic"] for m in errors))
bus.check("every error is on error.VALIDATION.processing", topics == ["error.VALIDATION.processing"],
          str(topics))
bus.check("one error per invalid record: %d errors for %d order-book records"
          % (len(errors), BOOKS), len(errors) == BOOKS)

bodies = [m["body"] for m in errors]
header = {"error_type": "VALIDATION", "layer_name": "processing", "instance": "validate",
          "operation": "validate",
          "message": "required field 'price' is missing", "is_critical": False,
          "stream": "orderbook"}
bad = [b for b in bodies if any(b.get(k) != v for k, v in header.items())
       or not isinstance(b.get("seq"), int) or not isinstance(b.get("timestamp"), int)]
bus.check("each error says VALIDATION, processing, instance validate, validate, not critical, "
          "stream orderbook, "
          "with its batch's seq and a timestamp", not bad, str(bad[:1])[:300] if bad else "")
details = [b.get("details", {}) for b in bodies]
bad = [d for d in details if (d.get("field"), d.get("expected"), d.get("got"))
       != ("price", "present", "missing")]
bus.check("each error's details are {field: price, expected: present, got: missing}", not bad,
          str(bad[:1])[:300] if bad else "")
records = [d.get("record") for d in details]
bad = [r for r in records if not isinstance(r, dict) or "price" in r
       or not {"symbol", "ts", "n", "bid_price_1", "ask_qty_3"} <= set(r)]
bus.check("each error's details carry the invalid order-book record itself", not bad,
          str(bad[:1])[:300] if bad else "")
ns = sorted(r["n"] for r in records if isinstance(r, dict) and "n" in r)
bus.check("the records named are n = 0..%d, each once" % (BOOKS - 1), ns == list(range(BOOKS)),
          "%d distinct of %d" % (len(set(ns)), len(ns)))
by_seq = {}
for b in bodies:
    by_seq.setdefault(b["seq"], []).append(b["details"]["record"]["n"])
bus.check("the errors of one batch (same seq) name consecutive records (%d batches)" % len(by_seq),
          all(sorted(v) == list(range(min(v), min(v) + len(v))) for v in by_seq.values()))

during = [(e, r) for e, r in samples if 0 < e < BOOKS and 0 < r < TICKS]
grew = len(set(r for _, r in during)) > 1
bus.check("valid rows reached the CSV while the errors came (%d samples mid-run, rows %s..%s)"
          % (len(during), during[0][1] if during else "-", during[-1][1] if during else "-"),
          grew)
prices = glob.glob(bus.path("csv", "*", "prices.csv"))
if bus.check("the price stream has its CSV file", len(prices) == 1, str(prices)):
    ok, message = lib.check_n(prices[0], TICKS)
    bus.check(message, ok)
books = glob.glob(bus.path("csv", "*", "orderbook.csv"))
book_rows = sum(max(0, open(f).read().count("\n") - 1) for f in books)
bus.check("no order-book record reached the CSV", book_rows == 0, "%d rows" % book_rows)

stats = lib.stats(bus.bus_ep)
bus.check("the broker dropped no topic message", stats.get("topics_dropped") == 0,
          "topics_dropped %s" % stats.get("topics_dropped"))
bus.finish()
