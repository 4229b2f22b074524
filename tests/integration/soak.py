"""soak.py -- days of unattended collection in minutes, on the test clock.

ticker -> json-validate -> csv, and postgres beside it as a non-critical
sink (critical: false: fed from the broker's backlog, a server of its own
started on loopback in a temporary directory by pg_server.py; without
PostgreSQL's binaries the soak says so and fails), through the real
broker, every process run
with DCBUS_CLOCK="anchor=<start>,rate=R" (common/clock.h): one simulated
hour is 3600/R real seconds, so the broker's idle sessions rotate every
hour (broker.session_rotate_s: 3600) as they would in a month of real
time.  Each simulated day also has two named sessions (an observation of
M31 from 02:00 to 04:00, an alignment from 13:00 to 14:00), and the
processes are restarted along the way: day 1, 4, 7... kill -9 of the csv
sink; day 2, 5, 8... kill -9 of the broker; day 3, 6, 9... a clean stop
and start of the json-validate step.

At the end of each simulated day it samples, for each process, its RSS
(VmRSS) and open file descriptors, the spool's and the csv checkpoint's
size on disk (the spool's segments apart from the broker's other state
files: tasks.db and its log, sessions.mp), and the day's mean time of a
flush() of each sink (the "flushes" request: the storage host's count
and total, differences from the day before), and prints them as one
line.  At the end it checks, with Python's csv module over every session
folder, and with psql over the postgres table:

  - every tick n = 0..N-1 is stored exactly once, in the csv and in
    PostgreSQL (lost, doubled);
  - every session the broker reported (session.start on the topics) that
    holds data has a folder of its own, named by its id, and no two
    sessions share one; there are about 24 idle sessions a day;
  - nothing grows with the days: per process, the RSS of the last days is
    within 50% + 8 MB of the first days', the descriptors within 8, the
    spool (1 MiB segments) within 2x + 2 MiB, the broker's state files
    within 2x + 8 MiB, the csv checkpoint within 2x + 4 KiB, each sink's
    flush time (the median of the days' means) within 3x + 5 ms -- loose
    enough for a loaded machine, tight enough for a flush that rewrites
    what grows with the days.  (The
    checkpoint rises for about 11 days, then stays at its 256 ranges of
    seqs: end markers leave a gap at each session's end; printed as a
    note when the csv says so, see docs/operations.md.)

Last line: `days: D lost: L doubled: X growth: none` (or what grew).
Sizes and counts are asserted; times are only printed.

    DCBUS_BUILD_DIR=build /usr/bin/python3 tests/integration/soak.py --days 30
"""

import argparse
import csv
import glob
import os
import signal
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import pg_server  # noqa: E402

HOUR = 3600
DAY = 86400
PROCS = ("broker", "ticks", "validate", "csv", "pg")
SINKS = ("csv", "pg")
PG_TABLE = "soak_ticks"
# (start hour, end hour, type, meta) of each day's named sessions
NAMED = ((2, 4, "observation", {"target": "M31"}), (13, 14, "alignment", {}))


def parse_args():
    p = argparse.ArgumentParser(description="days of hourly sessions on the test clock")
    p.add_argument("--days", type=int, default=int(os.environ.get("SOAK_DAYS", "30")))
    p.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", "3600")),
                   help="simulated seconds per real second (default 3600: a day in 24 s; "
                   "the broker looks at the clock once a real second, so an hour needs "
                   "rate <= 3600 to rotate on time)")
    p.add_argument("--ticks-per-day", type=int, default=4000)
    return p.parse_args()


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


class Soak:
    def __init__(self, args):
        self.args = args
        self.bus = lib.Bus()
        try:
            self.pg = pg_server.PgServer()
        except RuntimeError as e:
            print("soak: FAIL: no PostgreSQL for the postgres sink: %s" % e, flush=True)
            print("days: 0 lost: ? doubled: ? growth: ? (no PostgreSQL)", flush=True)
            sys.exit(1)
        self.anchor = time.time()
        self.rate = args.rate
        os.environ["DCBUS_CLOCK"] = "anchor=%.6f,rate=%g" % (self.anchor, self.rate)
        self.ticks = args.ticks_per_day * args.days
        tick_rate = args.ticks_per_day * self.rate / DAY  # ticks per real second
        head = self.bus.config_head(broker_extra=", session_rotate_s: 3600, spool_segment_mb: 1")
        self.config = self.bus.write("soak.yaml", head + """workers:
  ticks:    {plugin: ticker, symbols: [AAA, BBB], limit: %d, rate: %d, batch: 50,
             orderbook: false, seed: 3}
  validate: {plugin: json-validate, required: [symbol, ts, n]}
  csv:      {plugin: csv, dir: %s}
  pg:       {plugin: postgres, dsn: "%s", table: %s, critical: false}
pipelines:
  p: {from: ticks, through: [validate], to: [csv, pg]}
""" % (self.ticks, max(1, round(tick_rate)), self.bus.path("csv"), self.pg.dsn, PG_TABLE))
        self.sessions = {}  # id -> type, from session.start on the topics
        self.sub = zmq.Context.instance().socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"session.start")
        self.samples = []
        self.flushed = {}  # sink -> (flushes, total_us) at the last sample

    def sim_now(self):
        return (time.time() - self.anchor) * self.rate

    def real_at(self, sim_s):
        return self.anchor + sim_s / self.rate

    def pump_until(self, sim_s):
        """Reads the topics until the simulated time sim_s."""
        while True:
            left = self.real_at(sim_s) - time.time()
            if left <= 0:
                return
            if self.sub.poll(min(100, max(1, int(left * 1000)))):
                _, body = self.sub.recv_multipart()
                s = msgpack.unpackb(body, raw=False)
                self.sessions[s["id"]] = s["type"]

    def start_all(self):
        self.bus.broker(self.config)
        self.sub.connect(self.bus.topics_ep)
        for name in ("csv", "pg", "validate", "ticks"):
            self.bus.worker(name, self.config)

    def kill(self, name):
        self.bus.procs[name].send_signal(signal.SIGKILL)
        self.bus.procs[name].wait()
        if name == "broker":
            self.bus.broker(self.config)
        else:
            self.bus.worker(name, self.config)

    def restart_clean(self, name):
        self.bus.stop(name)
        self.bus.worker(name, self.config)

    def named(self, typ, meta, start):
        op = "session_start" if start else "session_end"
        args = {"type": typ, "meta": meta} if start else {"status": "completed"}
        reply = lib.request(self.bus.bus_ep, op, args, timeout_s=10)
        if not reply.get("ok"):
            print("warning: %s %s: %s" % (op, typ, reply), flush=True)

    def day(self, d):
        base = d * DAY
        for h0, h1, typ, meta in NAMED:
            self.pump_until(base + h0 * HOUR)
            self.named(typ, meta, True)
            self.pump_until(base + h1 * HOUR)
            self.named(typ, meta, False)
        self.pump_until(base + 18 * HOUR)
        if self.ticker_running():
            victim = ("validate", "csv", "broker")[(d + 1) % 3]
            (self.restart_clean if victim == "validate" else self.kill)(victim)
        self.pump_until(base + DAY)
        self.sample(d + 1)

    def ticker_running(self):
        return self.bus.procs["ticks"].poll() is None

    def sample(self, day):
        t0 = time.monotonic()
        row = {"day": day}
        for name in PROCS:
            p = self.bus.procs.get(name)
            alive = p is not None and p.poll() is None
            row[name + "_rss"] = rss_kb(p.pid) if alive else 0
            row[name + "_fd"] = fds(p.pid) if alive else 0
        row["spool"] = du(self.bus.path("spool", "spool"))  # the segments
        row["state"] = du(self.bus.path("spool")) - row["spool"]  # tasks.db*, sessions.mp
        cp = self.bus.path("csv", ".dcbus-csv-checkpoint")
        row["checkpoint"] = os.path.getsize(cp) if os.path.exists(cp) else 0
        row["folders"] = len(glob.glob(self.bus.path("csv", "*", "")))
        row["sessions"] = len(self.sessions)
        for name in SINKS:
            row[name + "_flush_us"] = self.day_flush_us(name)
        row["sample_ms"] = (time.monotonic() - t0) * 1000
        self.samples.append(row)
        print("day %3d  rss KB %s  fds %s  spool %8d B  state %8d B  checkpoint %6d B  "
              "folders %4d  sessions %4d  flush us %s"
              % (day, " ".join("%s %6d" % (n, row[n + "_rss"]) for n in PROCS),
                 " ".join("%3d" % row[n + "_fd"] for n in PROCS),
                 row["spool"], row["state"], row["checkpoint"], row["folders"],
                 row["sessions"],
                 " ".join("%s %s" % (n, "-" if row[n + "_flush_us"] is None
                                     else "%.0f" % row[n + "_flush_us"]) for n in SINKS)),
              flush=True)

    def day_flush_us(self, sink):
        """The mean time of the sink's flushes since the last sample, from
        its host's totals (a restarted worker counts from 0 again); None
        when it did not answer or did not flush."""
        try:
            reply = lib.request(self.bus.bus_ep, "flushes", {"instance": sink}, timeout_s=5)
        except TimeoutError:
            return None
        if not reply.get("ok"):
            return None
        r = reply["result"]
        n0, t0 = self.flushed.get(sink, (0, 0))
        if r["flushes"] < n0:  # a new process
            n0, t0 = 0, 0
        self.flushed[sink] = (r["flushes"], r["total_us"])
        n = r["flushes"] - n0
        return (r["total_us"] - t0) / n if n else None

    def growth(self):
        """What grew between the first and the last days (sizes, counts)."""
        n = max(1, min(5, len(self.samples) // 2))
        first, last = self.samples[:n], self.samples[-n:]

        def mean(rows, key):
            vals = [r[key] for r in rows if r[key]]
            return sum(vals) / len(vals) if vals else 0

        grew = []
        for name in SINKS:
            a = median(r[name + "_flush_us"] for r in first)
            b = median(r[name + "_flush_us"] for r in last)
            if a is not None and b is not None and b > 3 * a + 5000:
                grew.append("%s flush %d->%d us" % (name, a, b))
        for name in PROCS:
            a, b = mean(first, name + "_rss"), mean(last, name + "_rss")
            if a and b > a * 1.5 + 8192:
                grew.append("%s rss %d->%d KB" % (name, a, b))
            a, b = max(r[name + "_fd"] for r in first), max(r[name + "_fd"] for r in last)
            if b > a + 8:
                grew.append("%s fds %d->%d" % (name, a, b))
        a, b = max(r["checkpoint"] for r in first), max(r["checkpoint"] for r in last)
        if b > 2 * a + 4096:
            grew.append("checkpoint %d->%d B" % (a, b))
        a, b = max(r["spool"] for r in first), max(r["spool"] for r in last)
        if b > 2 * a + (2 << 20):
            grew.append("spool %d->%d B" % (a, b))
        a, b = max(r["state"] for r in first), max(r["state"] for r in last)
        if b > 2 * a + (8 << 20):  # tasks.db's write-ahead log runs to ~4 MiB
            grew.append("broker state %d->%d B" % (a, b))
        return grew

    def stored(self):
        """n of every stored tick, and folder -> its rows' count."""
        ns, per_folder = [], {}
        for path in glob.glob(self.bus.path("csv", "*", "prices.csv")):
            with open(path, newline="") as f:
                got = [int(r["n"]) for r in csv.DictReader(f)]
            ns += got
            per_folder[os.path.basename(os.path.dirname(path))] = len(got)
        return ns, per_folder

    def run(self):
        a = self.args
        print("soak: %d simulated days at %gx (a day in %.1f s), %d ticks, data in %s"
              % (a.days, self.rate, DAY / self.rate, self.ticks, self.bus.dir), flush=True)
        self.start_all()
        for d in range(a.days):
            self.day(d)
        bus = self.bus
        bus.check("the ticker ran to its end", bus.wait("ticks", 120) == 0)
        ok, left = bus.wait_delivered(60)
        bus.check("the broker delivered every batch", ok, "in flight: %s" % left)
        # The non-critical sink may lag: its backlog is fed to it in order.
        pg_all = lib.wait_for(lambda: self.pg_counts()[1] >= self.ticks, 120, 0.5)
        bus.check("postgres caught up with the backlog", pg_all, "rows %d distinct n %d"
                  % self.pg_counts())
        for name in ("ticks", "validate", "csv", "pg"):
            bus.stop(name)
        return self.verdict()

    def pg_counts(self):
        """(rows, distinct n) in the postgres sink's table."""
        try:
            out = self.pg.sql("SELECT count(*), count(DISTINCT (data->>'n')::bigint) FROM %s"
                              % PG_TABLE)
        except Exception:  # noqa: BLE001 -- the table may not exist yet
            return 0, 0
        rows, distinct = out.split("|")
        return int(rows), int(distinct)

    def verdict(self):
        bus = self.bus
        ns, per_folder = self.stored()
        distinct = set(ns)
        lost = self.ticks - len(distinct & set(range(self.ticks)))
        doubled = len(ns) - len(distinct)
        bus.check("every tick stored exactly once", lost == 0 and doubled == 0,
                  "lost %d doubled %d" % (lost, doubled))
        pg_rows, pg_distinct = self.pg_counts()
        pg_in_range = int(self.pg.sql("SELECT count(DISTINCT (data->>'n')::bigint) FROM %s "
                                      "WHERE (data->>'n')::bigint BETWEEN 0 AND %d"
                                      % (PG_TABLE, self.ticks - 1)))
        pg_lost, pg_doubled = self.ticks - pg_in_range, pg_rows - pg_distinct
        bus.check("every tick in PostgreSQL exactly once", pg_lost == 0 and pg_doubled == 0,
                  "rows %d distinct n %d: lost %d doubled %d"
                  % (pg_rows, pg_distinct, pg_lost, pg_doubled))
        lost, doubled = lost + pg_lost, doubled + pg_doubled
        folders = set(per_folder)
        unknown = sorted(f for f in folders if f not in self.sessions)
        bus.check("every folder with data is a session's own (named by its id)", not unknown,
                  str(unknown[:3]))
        idle = sum(1 for t in self.sessions.values() if t == "idle")
        bus.check("about 24 idle sessions a simulated day, each id once",
                  idle >= 18 * self.args.days, "%d idle sessions in %d days" % (idle,
                                                                               self.args.days))
        named = sum(1 for t in self.sessions.values() if t != "idle")
        bus.check("the named sessions each began once", named >= len(NAMED) * self.args.days,
                  "%d named" % named)
        grew = self.growth()
        bus.check("no process's memory or descriptors, the spool, nor a flush's time grow "
                  "with the days",
                  not grew, "; ".join(grew))
        # Printed, not asserted: batches that reach no sink (a collector's
        # end markers, batches a step empties) leave a gap in the csv's seq
        # ranges at each session's end; the checkpoint keeps 256 ranges, so
        # after about 11 days the oldest are forgotten (docs/operations.md).
        for line in bus.log("csv").splitlines():
            if "ranges of seqs written" in line:
                print("note: csv: %s" % line.split("msg=", 1)[-1], flush=True)
                break
        print("days: %d lost: %d doubled: %d growth: %s"
              % (self.args.days, lost, doubled, ", ".join(grew) if grew else "none"), flush=True)
        return 1 if bus.failed else 0


if __name__ == "__main__":
    sys.exit(Soak(parse_args()).run())
