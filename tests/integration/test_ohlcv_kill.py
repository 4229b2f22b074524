"""test_ohlcv_kill.py -- ticker -> ohlcv -> csv through the real broker,
with the ohlcv worker and the broker killed with SIGKILL during the flow:
every closed candle is what the stored ticks make, none counts a tick
twice or misses one.

The ticker makes 120,000 ticks of three symbols at 15,000 ticks/s, ts
1 ms apart (120 s of the ticks' time).  The ohlcv processor makes 1s, 1m
and 5m candles (updates of open ones every 10 s of tick time) on
prices.ohlcv, journaled by the host (workers/processor.c).  During the
flow a session is started, the ohlcv worker is killed and restarted, the
session is ended, the broker is killed and restarted (which begins a new
idle session), and the ohlcv worker is killed again.  At the end, read
back with Python's csv module:
  - the ticks: n = 0..119999, each once, over every session's prices.csv;
  - the candles the test computes from those ticks, per session, symbol,
    interval and window (open, high, low, close, volume, quote_volume,
    trades_count, open_time, close_time), equal the closed candles
    stored, one closed candle each: those closed by time, by the end of a
    session and by the end of the source (the 5m candles close only so);
  - per interval, the closed candles' trades_count add up to the ticks;
  - the broker and the ohlcv worker were killed while the ticker ran.
"""

import math
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from candles_ref import closed_csv_candles, offline_candles, read_ticks  # noqa: E402

TICKS, RATE, STEP_US = 120000, 15000, 1000
START_TS = 1_700_000_000_000_000
INTERVALS = {"1s": 1_000_000, "1m": 60_000_000, "5m": 300_000_000}

bus = lib.Bus()
config = bus.write("o.yaml", bus.config_head() + """
workers:
  ticks: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT, SOL_USDT], limit: %d, batch: 500,
          rate: %d, orderbook: false, seed: 7, start_ts: %d, step_us: %d}
  candles: {plugin: ohlcv, intervals: [1s, 1m, 5m], update_every: 10s}
  csv: {plugin: csv, dir: csv}
pipelines:
  p: {from: ticks, through: [candles], to: [csv]}
""" % (TICKS, RATE, START_TS, STEP_US))


def kill(name):
    bus.procs[name].send_signal(signal.SIGKILL)
    bus.procs[name].wait()


def restart(name, start):
    """Starts `name` again, its log and process under name.START."""
    bin_dir = os.path.join(bus.build, "bin")
    if name == "broker":
        argv = [os.path.join(bin_dir, "dcbus-broker"), "--config", config]
    else:
        argv = [os.path.join(bin_dir, "dcbus-worker"), "--instance", name, "--config", config]
    bus.procs[name + ".%d" % start] = bus.start(name + ".%d" % start, *argv)
    bus.procs[name] = bus.procs[name + ".%d" % start]


def request(op, **args):
    return lib.request(bus.bus_ep, op, args)


def ticker_running():
    return bus.procs["ticks"].poll() is None


bus.broker(config)
for name in ("csv", "candles", "ticks"):
    bus.worker(name, config)
time.sleep(1.0)
bus.check("a session starts", request("session_start", type="ticks") is not None)
time.sleep(1.5)
running = ticker_running()
kill("candles")
restart("candles", 1)
time.sleep(1.5)
bus.check("the session ends", request("session_end") is not None)
time.sleep(1.0)
running = running and ticker_running()
kill("broker")
time.sleep(0.3)
restart("broker", 1)
time.sleep(1.5)
running = running and ticker_running()
kill("candles")
restart("candles", 2)
bus.check("the ohlcv worker and the broker were killed while the ticker ran", running)

bus.check("the ticker finishes", bus.wait("ticks", 60) == 0)
ok, left = bus.wait_delivered(30)
bus.check("every batch is delivered", ok, str(left))
bus.check("the ohlcv worker stops cleanly", bus.stop("candles") == 0)
bus.check("the csv worker stops cleanly", bus.stop("csv") == 0)


ticks = read_ticks(bus.path("csv"))
ns = [t[0] for t in ticks]
bus.check("n = 0..%d, each once" % (TICKS - 1), ns == list(range(TICKS)),
          "%d rows, %d distinct" % (len(ns), len(set(ns))))
sessions = sorted({t[1] for t in ticks})
bus.check("the ticks span several sessions", len(sessions) >= 3, str(sessions))

# The candles, from the stored ticks, in the ticks' order.
expected = offline_candles(ticks, INTERVALS)
doubles = []
stored = closed_csv_candles(bus.path("csv"), doubles.append)
bus.check("each candle is closed once", not doubles, str(doubles[:5]))


def close_enough(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


problems = []
for key, want in expected.items():
    got = stored.get(key)
    if got is None:
        problems.append("%s: not closed" % (key,))
        continue
    for field in ("open", "high", "low", "close", "volume", "quote_volume"):
        if not close_enough(float(got[field]), want[field]):
            problems.append("%s: %s %s, expected %r" % (key, field, got[field], want[field]))
    for field in ("trades_count", "close_time"):
        if int(got[field]) != want[field]:
            problems.append("%s: %s %s, expected %d" % (key, field, got[field], want[field]))
extra = [k for k in stored if k not in expected]
bus.check("every closed candle is as the stored ticks make it",
          not problems and not extra,
          "; ".join(problems[:5] + ["extra %s" % (k,) for k in extra[:5]]) or
          "%d candles" % len(expected))
for name in INTERVALS:
    total = sum(int(c["trades_count"]) for k, c in stored.items() if k[2] == name)
    bus.check("the %s candles count every tick once" % name, total == TICKS, str(total))
bus.check("the ohlcv worker restored its journaled state",
          all("processor state restored from its journal" in bus.log("candles.%d" % i)
              for i in (1, 2)))
bus.finish()
