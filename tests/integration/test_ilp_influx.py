"""test_ilp_influx.py -- ticker -> csv (critical) + ilp (critical: false)
into a real InfluxDB 1.6, which hangs for 10 s in the middle of the run.

A throwaway influxd (influx_env.py) on loopback.  Two tickers: `ticks`
(two symbols, one of them `a b,c="d"\\e=f` -- spaces, a comma, quotes, a
backslash, an equals sign) paced so that the run lasts about 12 s, and
`same`, whose 900 ticks all carry the same microsecond (step_us 0), for
the nudge.  All of it in one observation session with metadata.  InfluxDB
is stopped with SIGSTOP 2 s in and continued 10 s later: the collectors
must finish meanwhile with the CSV complete; while it catches up the ilp
worker is killed (SIGKILL) and started again; afterwards InfluxDB must
hold every record of the CSV as one point, compared field by field
(symbol read back exactly, timestamp's microsecond, price, volume,
quote_volume, n, session tag), nothing lost and nothing doubled.  The
session's point in `sessions` must say completed with the broker's count,
the counts per stream, and the symbols and data types stored (read back
from the server, since the killed worker's tally is gone).
"""

import csv
import glob
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import influx_env  # noqa: E402
import lib  # noqa: E402

TICKS, SAME = 24000, 900
WEIRD = 'a b,c="d"\\e=f'

srv = influx_env.Influx()
bus = lib.Bus()
config = bus.write("c.yaml", bus.config_head() + """
workers:
  ticks: {plugin: ticker, symbols: [BTC_USDT, '%s'], rate: 2000, limit: %d, batch: 200,
          linger_ms: 20, start_ts: 1700000000000000, step_us: 1000}
  same:  {plugin: ticker, symbols: [SAME], limit: %d, batch: 100, orderbook: false,
          stream_prefix: same_, start_ts: 1700000000000000, step_us: 0}
  csv:   {plugin: csv, dir: csv}
  ilp:   {plugin: ilp, url: "%s", db: ticks, timeout_ms: 1000, reconnect_max_ms: 500,
          critical: false, max_lines: 1000}
pipelines:
  main: {from: ticks, to: [csv, ilp]}
  same: {from: same, to: [csv, ilp]}
""" % (WEIRD.replace("'", "''"), TICKS, SAME, srv.url))


wait_for = lib.wait_for


def csv_rows(stream):
    rows = []
    for path in glob.glob(bus.path("csv", "*", stream + ".csv")):
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def points(measurement):
    return srv.points('SELECT * FROM "%s"' % measurement, db="ticks")


bus.broker(config)
bus.worker("csv", config)
bus.worker("ilp", config)
time.sleep(0.5)
reply = lib.request(bus.bus_ep, "session_start",
                    {"type": "observation", "meta": {"symbols": ["BTC_USDT", "SAME"],
                                                     "data_types": ["prices", "orderbook"]}},
                    timeout_s=10)
bus.check("an observation session starts", reply.get("ok"), reply)
session = reply["result"]["id"]
bus.worker("ticks", config)
bus.worker("same", config)
bus.check("points reach InfluxDB", wait_for(
    lambda: srv.points('SELECT count(price) FROM "prices"', db="ticks"), 20))

time.sleep(1.5)
srv.pause()
paused_at = time.monotonic()
bus.check("the collectors finish while InfluxDB hangs",
          bus.wait("ticks", 40) == 0 and bus.wait("same", 10) == 0)
bus.check("the CSV is complete while InfluxDB hangs",
          wait_for(lambda: len(csv_rows("prices")) == TICKS, 20), len(csv_rows("prices")))
time.sleep(max(0, 10 - (time.monotonic() - paused_at)))
srv.resume()
# While it catches up, the ilp worker is killed and started again.
bus.check("InfluxDB answers again", wait_for(srv.ping, 20))
time.sleep(0.5)
bus.procs["ilp"].send_signal(signal.SIGKILL)
bus.procs["ilp"].wait()
bus.worker("ilp", config)


def ilp_backlog():
    for b in lib.stats(bus.bus_ep).get("backlogs", []):
        if b["sink"] == "ilp":
            return b
    return None


def caught_up():
    b = ilp_backlog()
    return b is not None and b["batches"] == 0 and b["in_flight"] == 0


ok, left = bus.wait_delivered(120)
bus.check("InfluxDB catches up: the ilp backlog empties",
          ok and wait_for(caught_up, 120), str(ilp_backlog()))

# Every CSV row once in InfluxDB, the same values.
for stream, measurement in (("prices", "prices"), ("orderbook", "orderbook"),
                            ("same_prices", "same_prices")):
    rows = csv_rows(stream)
    pts = points(measurement)
    by_key = {}
    for p in pts:
        by_key.setdefault((p["symbol"], int(p["n"])), []).append(p)
    doubled = [k for k, v in by_key.items() if len(v) > 1]
    missing, differ = [], []
    for r in rows:
        got = by_key.get((r["symbol"], int(r["n"])))
        if not got:
            missing.append(r["n"])
            continue
        p = got[0]
        fields = [k for k in r if k not in ("symbol", "ts", "n")]
        if (p["time"] // 1000 != int(r["ts"]) or p["session_id"] != session or
                any(float(r[k]) != p[k] for k in fields)):
            differ.append((r, p))
    bus.check("%s: %d CSV rows, %d points" % (stream, len(rows), len(pts)),
              len(rows) == len(pts) and rows, "")
    bus.check("%s: every row is a point with the same values" % stream,
              not missing and not differ, "missing %s, differ %s" % (missing[:5], differ[:2]))
    bus.check("%s: nothing doubled" % stream, not doubled, doubled[:5])

weird = [p for p in points("prices") if p["symbol"] == WEIRD]
bus.check("the symbol with spaces, commas, quotes reads back exactly",
          len(weird) == TICKS // 2, "%d points" % len(weird))
same = points("same_prices")
bus.check("900 ticks of one symbol in one microsecond are 900 points",
          len(same) == SAME and len({p["time"] // 1000 for p in same}) == 1,
          "%d points" % len(same))

# The session's point.
reply = lib.request(bus.bus_ep, "session_end", {"status": "completed"}, timeout_s=10)
bus.check("the session ends", reply.get("ok"), reply)


def session_point():
    rows = srv.points("SELECT * FROM sessions WHERE session_id = '%s'" % session, db="ticks")
    return rows[0] if rows and rows[0].get("status") == "completed" else None


bus.check("the sessions point says completed", wait_for(session_point, 20))
sp = session_point() or {}
total = TICKS + SAME + len(csv_rows("orderbook"))
bus.check("records_collected is the broker's count", sp.get("records_collected") == total,
          "%s, expected %d" % (sp.get("records_collected"), total))
bus.check("prices_count and orderbook_count counted in the database",
          sp.get("prices_count") == TICKS and sp.get("orderbook_count") == len(csv_rows("orderbook")),
          "%s %s" % (sp.get("prices_count"), sp.get("orderbook_count")))
# What was stored, though the worker that wrote part of it was killed: the
# server's tag values and measurements of the session, not the metadata's.
want_symbols = json.dumps(sorted(["BTC_USDT", "SAME", WEIRD]), separators=(",", ":"))
want_types = json.dumps(["orderbook", "prices", "same_prices"], separators=(",", ":"))
bus.check("symbols and data types as stored",
          sp.get("symbols") == want_symbols and sp.get("data_types") == want_types,
          "%s %s" % (sp.get("symbols"), sp.get("data_types")))
bus.check("start, end and duration", sp.get("end_time", 0) > sp.get("start_time", 0) > 0 and
          abs(sp["duration_seconds"] - (sp["end_time"] - sp["start_time"]) / 1e6) < 1e-6, sp)
bus.check("the ilp worker logged no malformed line", "unable to parse" not in bus.log("ilp"))
srv.close()
bus.finish()
