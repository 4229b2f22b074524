"""test_topics_slow_subscriber.py -- a subscriber that never reads slows
nothing down and starves no one else.

Two identical pipelines, ticker (300,000 ticks, batches of 20: 16,500
batches on streams of their own, more than the broker's high-water mark of 10,000 messages per
subscriber) -> csv, run one after the other:

  a: with only a healthy subscriber to task. (it reads everything);
  b: the same, plus a subscriber to everything -- data.* included (the
     config turns the data tap on), so the broker publishes every batch --
     with a receive high-water mark of 10,
     that never reads.

It checks that

  - run b completes, every record once in its CSV, at normal speed: at
    most twice run a's time plus a second (a run completes when its ticker
    has ended and the broker has delivered every batch to the sink:
    batches_in_flight 0);
  - the broker counted the messages it could not deliver: topics_dropped
    > 0, in its stats and in `dcbus stats --json`;
  - the healthy subscriber still got run b's task messages through the
    end (task.COMPLETED of its pipeline task): one stuck subscriber must
    not cost the others their messages.
"""

import json
import os
import subprocess
import sys
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS = 300000
TOTAL = TICKS + TICKS // 10

bus = lib.Bus()
workers, pipelines = "", ""
for run in ("a", "b"):
    workers += ("  ticker_%s: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: %d, "
                "batch: 20, seed: 3, stream_prefix: %s_}\n" % (run, TICKS, run))
    workers += "  csv_%s: {plugin: csv, dir: %s}\n" % (run, bus.path("csv_" + run))
    pipelines += "  ticks_%s: {from: ticker_%s, to: [csv_%s]}\n" % (run, run, run)
config = bus.write("bus.yaml", bus.config_head(broker_extra=", data_tap: true") + "workers:\n" + workers
                   + "pipelines:\n" + pipelines)


class Healthy(threading.Thread):
    """Reads every task.* message as it comes, until told to stop."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"task.")
        self.sock.setsockopt(zmq.SUBSCRIBE, b"metrics")
        self.sock.connect(bus.topics_ep)
        self.topics, self.metrics, self.running = [], 0, True

    def run(self):
        while self.running:
            if self.sock.poll(100):
                topic = self.sock.recv_multipart()[0].decode()
                if topic == "metrics":
                    self.metrics += 1
                else:
                    self.topics.append(topic)


def run_pipeline(run):
    """Runs ticker_<run> to its end and waits for the broker to deliver
    every batch to csv_<run> (a ticker ends once its batches are in the
    broker's spool); returns the seconds it took, or None."""
    t0 = time.monotonic()
    bus.worker("ticker_" + run, config)
    status = bus.wait("ticker_" + run, 120)
    bus.check("run %s: the ticker ends by itself with exit 0 after %.2f s"
              % (run, time.monotonic() - t0), status == 0, "status %s" % status)
    delivered, in_flight = bus.wait_delivered(120)
    took = time.monotonic() - t0
    bus.check("run %s: the broker delivers every batch to csv_%s, %.2f s after the start"
              % (run, run, took), delivered,
              "" if delivered else "batches_in_flight %s after 120 s" % in_flight)
    return took if status == 0 and delivered else None


def wait_for(predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


bus.broker(config)
healthy = Healthy()
healthy.start()
bus.check("the healthy subscriber receives the metrics topic",
          wait_for(lambda: healthy.metrics > 0, 10))
for name in ("csv_a", "csv_b"):
    bus.worker(name, config)
    bus.check("%s joins the broker" % name,
              bus.wait_log("broker", 'msg="worker joined" instance=%s ' % name, 10))

took_a = run_pipeline("a")

stuck = zmq.Context.instance().socket(zmq.SUB)
stuck.setsockopt(zmq.RCVHWM, 10)
stuck.setsockopt(zmq.RCVBUF, 4096)
stuck.setsockopt(zmq.LINGER, 0)
stuck.setsockopt(zmq.SUBSCRIBE, b"")
stuck.connect(bus.topics_ep)
time.sleep(1.0)  # its subscription reaches the broker; it reads nothing, ever
took_b = run_pipeline("b")

if took_a and took_b:
    bus.check("run b, with a stuck subscriber to everything, is at normal speed: "
              "%.2f s against %.2f s without it" % (took_b, took_a), took_b <= 2 * took_a + 1)
files = [os.path.join(bus.path("csv_b"), d, "b_prices.csv") for d in os.listdir(bus.path("csv_b"))
         if os.path.isdir(os.path.join(bus.path("csv_b"), d))]  # not csv's checkpoint file
if bus.check("run b wrote its price file", len(files) == 1 and os.path.exists(files[0]), str(files)):
    ok, message = lib.check_n(files[0], TICKS)
    bus.check("run b: " + message, ok)

stats = lib.stats(bus.bus_ep)
bus.check("the broker counted undelivered topic messages: topics_dropped %s"
          % stats.get("topics_dropped"), (stats.get("topics_dropped") or 0) > 0)
done = subprocess.run([os.path.join(bus.bin, "dcbus"), "stats", "--broker", bus.bus_ep, "--json"],
                      capture_output=True, text=True, timeout=10)
try:
    dropped = json.loads(done.stdout).get("topics_dropped")
except ValueError:
    dropped = None
bus.check("dcbus stats --json shows topics_dropped > 0", (dropped or 0) > 0,
          "topics_dropped %s" % dropped)

bus.check("the healthy subscriber got run b's task messages through the end "
          "(task.COMPLETED of its pipeline task)", wait_for(lambda: any(
              t.startswith("task.COMPLETED.ticker_b-") and t.endswith("/ticks_b")
              for t in healthy.topics), 5),
          "%d task messages, last %s" % (len(healthy.topics), healthy.topics[-1:]))
healthy.running = False
healthy.join(2)
stuck.close()
bus.finish()
