"""test_run_refused.py -- under `dcbus run`, a restarted worker takes its
dead predecessor's place at once, and a refusal makes the run fail.

Two runs of ticker -> csv (60,000 ticks at 20,000 a second), with a
heartbeat time-out of 20 s so that no connection times out during a run:

  1. the csv worker is killed with SIGKILL mid-run; the supervisor starts
     it again with the next start token of its secret, and the broker lets
     it take the dead one's place at once ("replaced by a new process",
     not "missed heartbeats" 20 s later).  The run ends with exit 0 and the
     CSV files have every row once.
  2. a client says HELLO as the running csv worker: refused (busy).  The
     data is unharmed (every row once), but the run ends with exit 1 and
     says that the broker refused something.
"""

import glob
import os
import re
import signal
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS = 60000
BOOKS = TICKS // 10

bus = lib.Bus()


def config(name):
    return bus.write(name + ".yaml", bus.config_head(broker_extra=", heartbeat_timeout_ms: 20000")
                     .replace("spool: %s" % bus.path("spool"), "spool: %s" % bus.path(name, "spool"))
                     + """workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: %d, seed: 3,
           start_ts: 1700000000000000, rate: 20000}
  csv: {plugin: csv, dir: %s}
pipelines:
  ticks: {from: ticker, to: [csv]}
""" % (TICKS, bus.path(name, "csv")))


def rows_exact(name):
    files = sorted(glob.glob(bus.path(name, "csv", "*", "*.csv")))
    for path, rows in zip(files, [TICKS / 10, TICKS]):  # orderbook, prices
        ok, message = lib.check_n(path, int(rows))
        bus.check("%s: %s" % (name, message), ok)
    bus.check("%s: two CSV files, one session" % name, len(files) == 2, repr(files))


def child_pid(log, instance):
    pids = re.findall(r'msg="child (?:started|restarted)" instance=%s replica=0 pid=(\d+)'
                      % instance, bus.log(log))
    return int(pids[-1]) if pids else None


def run_killed():
    cfg = config("killed")
    bus.start("killed", os.path.join(bus.bin, "dcbus"), "run", cfg)
    joined = bus.wait_log("killed", 'msg="worker joined" instance=csv ', 20) and \
        bus.wait_log("killed", 'msg="worker joined" instance=ticker ', 20)
    bus.check("run 1: csv and the ticker register", joined)
    pid = child_pid("killed", "csv")
    os.kill(pid, signal.SIGKILL)
    replaced = bus.wait_log("killed", 'msg="worker left" instance=csv replica=0 '
                            'reason="replaced by a new process"', 15)
    bus.check("run 1: csv killed; its restart takes the dead one's place at once", replaced)
    status = bus.wait("killed", 60)
    bus.check("run 1 ends with exit 0", status == 0, str(status))
    bus.check("run 1: nothing refused", "refused" not in bus.log("killed"))
    rows_exact("killed")


def run_impostor():
    cfg = config("impostor")
    bus.start("impostor", os.path.join(bus.bin, "dcbus"), "run", cfg)
    bus.check("run 2: csv and the ticker register",
              bus.wait_log("impostor", 'msg="worker joined" instance=csv ', 20) and
              bus.wait_log("impostor", 'msg="worker joined" instance=ticker ', 20))
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(bus.bus_ep)
    s.send_multipart([b"DCB1", b"HELLO", msgpack.packb(
        {"role": "storage", "instance": "csv", "plugin": "csv", "replica": 0, "abi": 2 << 16,
         "credit": 16})])
    answer = s.recv_multipart() if s.poll(5000) else None
    s.close()
    bus.check("run 2: a HELLO as the running csv worker is refused (busy)",
              answer is not None and answer[1] == b"ERROR" and
              msgpack.unpackb(answer[2], raw=False).get("code") == "busy", repr(answer))
    status = bus.wait("impostor", 60)
    bus.check("run 2 ends with exit 1", status == 1, str(status))
    bus.check("run 2 says the broker refused something",
              "the broker refused connections or batches" in bus.log("impostor"))
    rows_exact("impostor")


def main():
    run_killed()
    run_impostor()
    bus.finish()


main()
