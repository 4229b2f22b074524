"""ohlcv_chaos.py -- ticker -> ohlcv -> csv (critical) + ilp into a real
InfluxDB 1.6, the ohlcv worker and the broker killed with SIGKILL several
times each (and the ilp worker too) at moments scheduled within the
ticker's shortest possible run, the session changed half way; then every
tick, every closed candle and every point compared.  Used by
tests/integration/test_ohlcv_chaos.py (integration.ohlcv_chaos, 300,000
ticks) and scripts/chaos-ohlcv (2,000,000 ticks).

The pipeline is config/ticks.yaml's dual write on a bus of its own: three
symbols, the ticker paced at `rate` ticks/s, ts 1 ms apart; ohlcv with 1s,
1m, 5m, 15m and 1h candles (update_every 10s of tick time); csv; ilp with
critical: false (as in config/ticks.yaml: the database may fall behind,
the CSV may not -- and the run shows that a sink that is not critical
still ends up with every point once) into a throwaway influxd (influx_env),
measurements tick_prices and aggregated_ohlcv.

The ticker is paced, so its run lasts at least ticks/rate seconds; the
kills are scheduled at random moments (a seeded rng) within the first
80 % of that time, in rounds that take the ohlcv worker, the broker and
(from the second round) the ilp worker each in turn, so none can fall
short; half way the session is ended and another started (so candles
close by a session's end too, and the points carry several session tags).  Before each broker kill the csv
sink is stopped (SIGSTOP) until the broker's stats say batches_in_flight
> 0, so the broker dies with batches in flight; the sink is let go right
after.  A killed process is started again after a short pause.

At the end, compared:
  - the ticks in the CSV (every session's prices.csv): n = 0..ticks-1,
    each once;
  - the candles computed here from those ticks, per session, symbol,
    interval and window, with the closed candles in the CSV: each closed
    once, every field equal (floats within 1e-9 relative), none extra;
  - the candles read back from InfluxDB (/query) with the CSV's closed
    candles, point by point: the same series (session_id, symbol,
    interval tags), timestamp (open_time), is_closed true, every field
    exactly equal, none extra;
  - the tick points in InfluxDB with the CSV ticks, all of them, point by
    point (read back in windows of time): the same tags, the timestamp's
    microsecond the tick's ts, every field exactly equal.
"""

import math
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import influx_env  # noqa: E402
import lib  # noqa: E402
from candles_ref import closed_csv_candles, offline_candles, read_ticks  # noqa: E402

START_TS, STEP_US = 1_700_000_000_000_000, 1000
INTERVALS = {"1s": 1_000_000, "1m": 60_000_000, "5m": 300_000_000, "15m": 900_000_000,
             "1h": 3_600_000_000}
FLOATS = ("open", "high", "low", "close", "volume", "quote_volume")
INTS = ("trades_count", "close_time")
TICK_FIELDS = ("price", "volume", "quote_volume")
VICTIMS = ("candles", "broker", "ilp")
DB = "ticks"


class Result:
    """The counts of the last line; bad[] says what differed (the first few)."""

    def __init__(self):
        self.ticks = self.candles = self.lost = self.doubled = self.mismatched = 0
        self.bad = []

    def note(self, kind, what):
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.bad) < 20:
            self.bad.append("%s: %s" % (kind, what))

    def line(self):
        return "ticks: %d candles: %d lost: %d doubled: %d mismatched: %d" % (
            self.ticks, self.candles, self.lost, self.doubled, self.mismatched)

    def ok(self):
        return self.lost == 0 and self.doubled == 0 and self.mismatched == 0


def write_config(bus, srv, ticks, rate):
    return bus.write("chaos-ohlcv.yaml", bus.config_head() + """
workers:
  ticks: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT, SOL_USDT], limit: %d, batch: 500,
          rate: %d, orderbook: false, seed: 7, start_ts: %d, step_us: %d}
  candles: {plugin: ohlcv, intervals: [1s, 1m, 5m, 15m, 1h], update_every: 10s}
  csv: {plugin: csv, dir: csv}
  ilp:
    plugin: ilp
    critical: false
    url: "%s"
    db: %s
    timeout_ms: 5000
    reconnect_max_ms: 500
    measurements:
      tick_prices: {stream: prices, required: [price]}
      aggregated_ohlcv: {stream: prices.ohlcv, time_field: open_time, tags: [symbol, interval]}
pipelines:
  p: {from: ticks, through: [candles], to: [csv, ilp]}
""" % (ticks, rate, START_TS, STEP_US, srv.url, DB))


def kill_schedule(duration, kills_each, rng):
    """(time, victim): the ohlcv worker and the broker kills_each times
    each, the ilp worker once fewer (at least once), in rounds taking each
    in a random order, at random moments in [5 %, 80 %] of `duration`;
    and, half way, "session": the session ended and another started."""
    order = []
    for i in range(kills_each):
        victims = [v for v in VICTIMS if v != "ilp" or i > 0 or kills_each == 1]
        order += rng.sample(victims, len(victims))
    times = sorted(rng.uniform(0.05 * duration, 0.8 * duration) for _ in order)
    return sorted(list(zip(times, order)) + [(0.5 * duration, "session")])


class Chaos:
    """The bus's processes, killed and started again by name."""

    def __init__(self, bus, config, log):
        self.bus, self.config, self.log = bus, config, log
        self.starts = {"broker": 0, "candles": 0, "ilp": 0}
        self.sessions = 1
        self.in_flight_at_kill = []
        self.killed_while_ticking = True

    def restart(self, name):
        self.starts[name] += 1
        label = "%s.%d" % (name, self.starts[name])
        bin_dir = self.bus.bin
        if name == "broker":
            argv = [os.path.join(bin_dir, "dcbus-broker"), "--config", self.config]
        else:
            argv = [os.path.join(bin_dir, "dcbus-worker"), "--instance", name,
                    "--config", self.config]
        self.bus.procs[name] = self.bus.start(label, *argv)

    def in_flight(self):
        try:
            return lib.stats(self.bus.bus_ep, timeout_s=1.0)["batches_in_flight"]
        except (TimeoutError, RuntimeError):
            return None

    def kill(self, name, elapsed):
        """SIGKILL of `name`; the broker with batches in flight (the csv
        sink held with SIGSTOP until its stats say so)."""
        note = ""
        if name == "broker":
            csv_proc = self.bus.procs["csv"]
            csv_proc.send_signal(signal.SIGSTOP)
            n, deadline = None, time.monotonic() + 10
            while time.monotonic() < deadline:
                n = self.in_flight()
                if n:
                    break
                time.sleep(0.05)
            self.in_flight_at_kill.append(n or 0)
            note = " (batches_in_flight %s)" % n
        self.killed_while_ticking &= self.bus.procs["ticks"].poll() is None
        proc = self.bus.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if name == "broker":
            self.bus.procs["csv"].send_signal(signal.SIGCONT)
        self.log("chaos-ohlcv: t=%6.1fs kill -9 %s%s" % (elapsed, name, note))

    def next_session(self, elapsed):
        """Ends the session and starts another (asked until the broker,
        perhaps just restarted, answers)."""
        for op, args in (("session_end", {"status": "completed"}), ("session_start", {"type": "ticks"})):
            deadline = time.monotonic() + 20
            while True:
                try:
                    if lib.request(self.bus.bus_ep, op, args, timeout_s=2).get("ok"):
                        break
                except TimeoutError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("%s not answered" % op)
                time.sleep(0.1)
        self.sessions += 1
        self.log("chaos-ohlcv: t=%6.1fs session ended, another started" % elapsed)

    def run(self, schedule, t0):
        """Kills as scheduled, each restarted after a short pause."""
        for when, name in schedule:
            while time.monotonic() - t0 < when:
                time.sleep(0.02)
            if name == "session":
                self.next_session(time.monotonic() - t0)
                continue
            self.kill(name, time.monotonic() - t0)
            time.sleep(0.3 if name == "broker" else 0.1)
            self.restart(name)


wait_for = lib.wait_for


def ilp_caught_up(bus):
    try:
        backlogs = lib.stats(bus.bus_ep).get("backlogs", [])
    except (TimeoutError, RuntimeError):
        return False
    return all(b["batches"] == 0 and b["in_flight"] == 0 for b in backlogs if b["sink"] == "ilp")


def compare_candles(expected, stored, res):
    """The CSV's closed candles against the offline ones."""
    for key, want in expected.items():
        got = stored.get(key)
        if got is None:
            res.note("lost", "candle %s not closed in the CSV" % (key,))
            continue
        bad = [f for f in FLOATS
               if not math.isclose(float(got[f]), want[f], rel_tol=1e-9, abs_tol=1e-9)]
        bad += [f for f in INTS if int(got[f]) != want[f]]
        if bad:
            res.note("mismatched", "CSV candle %s: %s" % (key, ", ".join(
                "%s %s expected %r" % (f, got[f], want[f]) for f in bad)))
    for key in stored:
        if key not in expected:
            res.note("doubled", "CSV candle %s from no ticks" % (key,))


def compare_influx_candles(srv, stored, res):
    """The candles in InfluxDB against the CSV's closed ones, point by point."""
    points = srv.points("SELECT * FROM aggregated_ohlcv", db=DB)
    seen = set()
    for p in points:
        key = (p["session_id"], p["symbol"], p["interval"], p["time"] // 1000)
        seen.add(key)
        want = stored.get(key)
        if want is None:
            res.note("doubled", "InfluxDB candle %s not closed in the CSV" % (key,))
            continue
        bad = [f for f in FLOATS if p.get(f) != float(want[f])]
        bad += [f for f in INTS if p.get(f) != int(want[f])]
        if p["time"] % 1000 or p.get("is_closed") is not True:
            bad.append("time %s is_closed %s" % (p["time"], p.get("is_closed")))
        if bad:
            res.note("mismatched", "InfluxDB candle %s: %s" % (key, bad))
    for key in stored:
        if key not in seen:
            res.note("lost", "candle %s not in InfluxDB" % (key,))
    return len(points)


def compare_influx_ticks(srv, ticks, res, window=100000):
    """Every tick point in InfluxDB against the CSV ticks, read back in
    windows of `window` ticks of time (the ticks' ts are STEP_US apart)."""
    by_n = {t[0]: t for t in ticks}
    count = 0
    total = max(by_n) + 1 if by_n else 0
    for first in range(0, total, window):
        lo = (START_TS + first * STEP_US) * 1000
        hi = (START_TS + (first + window) * STEP_US) * 1000
        points = srv.points("SELECT * FROM tick_prices WHERE time >= %d AND time < %d"
                            % (lo, hi), db=DB)
        seen = set()
        for p in points:
            count += 1
            n = p.get("n")
            t = by_n.get(n)
            if t is None or n in seen:
                res.note("doubled", "InfluxDB tick point n=%s %s" % (n, "twice" if t else "extra"))
                continue
            seen.add(n)
            _, session, symbol, ts, price, volume, quote = t
            if (p["time"] // 1000 != ts or p["symbol"] != symbol or p["session_id"] != session
                    or (p["price"], p["volume"], p["quote_volume"]) != (price, volume, quote)):
                res.note("mismatched", "InfluxDB tick n=%d: %r, CSV %r" % (n, p, t))
        for n in range(first, min(first + window, total)):
            if n in by_n and n not in seen:
                res.note("lost", "tick n=%d not in InfluxDB" % n)
    return count


def run(ticks, rate, kills_each, seed, log=print):
    """The whole run; returns (bus, Result).  bus.check() has recorded
    each claim; the caller finishes the bus."""
    rng = random.Random(seed)
    srv = influx_env.Influx()
    bus = lib.Bus()
    config = write_config(bus, srv, ticks, rate)
    chaos = Chaos(bus, config, log)
    duration = ticks / rate
    schedule = kill_schedule(duration, kills_each, rng)
    log("chaos-ohlcv: %d ticks at %d/s (at least %.1f s), kills at %s" % (
        ticks, rate, duration, ", ".join("%.1fs %s" % k for k in schedule)))

    bus.broker(config)
    for name in ("csv", "ilp", "candles"):
        bus.worker(name, config)
    time.sleep(0.5)
    reply = lib.request(bus.bus_ep, "session_start", {"type": "ticks"}, timeout_s=10)
    bus.check("a session starts", reply.get("ok"), reply)
    bus.worker("ticks", config)
    t0 = time.monotonic()
    chaos.run(schedule, t0)
    bus.check("each kill came while the ticker ran", chaos.killed_while_ticking,
              ", ".join("%s %d" % (v, chaos.starts[v]) for v in VICTIMS))
    bus.check("each broker kill found batches in flight",
              all(n > 0 for n in chaos.in_flight_at_kill), str(chaos.in_flight_at_kill))
    bus.check("the ticker finishes", bus.wait("ticks", duration * 3 + 120) == 0)
    log("chaos-ohlcv: the ticker finished after %.1f s" % (time.monotonic() - t0))
    ok, left = bus.wait_delivered(300)
    bus.check("every batch is delivered", ok, str(left))
    bus.check("InfluxDB catches up: the ilp backlog empties",
              wait_for(lambda: ilp_caught_up(bus), 600))
    log("chaos-ohlcv: delivered after %.1f s" % (time.monotonic() - t0))
    for name in ("candles", "csv", "ilp"):
        bus.check("the %s worker stops cleanly" % name, bus.stop(name) == 0)
    bus.check("each restarted ohlcv worker restored its journaled state",
              all("processor state restored from its journal" in bus.log("candles.%d" % i)
                  for i in range(1, chaos.starts["candles"] + 1)))

    res = Result()
    rows = read_ticks(bus.path("csv"))
    ns = [t[0] for t in rows]
    res.ticks = len(set(ns))
    res.doubled += len(ns) - res.ticks
    res.lost += ticks - len(set(ns) & set(range(ticks)))
    bus.check("the CSV has n = 0..%d, each once" % (ticks - 1), ns == list(range(ticks)),
              "%d rows, %d distinct" % (len(ns), res.ticks))
    sessions = sorted({t[1] for t in rows})
    # session_end begins an idle session until the next session_start.
    bus.check("the ticks span the sessions started", len(sessions) >= chaos.sessions,
              str(sessions))
    expected = offline_candles(rows, INTERVALS)
    stored = closed_csv_candles(
        bus.path("csv"), lambda key: res.note("doubled", "closed twice in the CSV %s" % (key,)))
    res.candles = len(stored)
    compare_candles(expected, stored, res)
    bus.check("every closed candle in the CSV is as the ticks make it", res.ok(),
              "%d candles" % len(expected))
    for name in INTERVALS:
        total = sum(int(c["trades_count"]) for k, c in stored.items() if k[2] == name)
        bus.check("the %s candles count every tick once" % name, total == ticks, str(total))
    log("chaos-ohlcv: reading InfluxDB back")
    n_candles = compare_influx_candles(srv, stored, res)
    bus.check("the candles in InfluxDB are the CSV's closed ones, point by point", res.ok(),
              "%d points" % n_candles)
    n_points = compare_influx_ticks(srv, rows, res)
    bus.check("the tick points in InfluxDB are the CSV's ticks, point by point", res.ok(),
              "%d points" % n_points)
    for b in res.bad:
        log("chaos-ohlcv: " + b)
    srv.close()
    return bus, res
