"""test_topics_subscriber_loss.py -- each subscriber counts what it
missed: the broker numbers its topic messages per family (topic_seq,
docs/protocol.md "Topics"), and a slow subscriber sees the jumps.

The bus: a data tap on, ticker_t (150,000 ticks, one a batch: 165,000
data.* messages, more than the broker's 10,000 and a subscriber's 100,000
queued messages together) -> csv_t, and two subscribers of data.:

  - `dcbus watch --json data.`, its output to a file;
  - a `topics` collector, history -> csv_h (the topic of each message).

Both take one batch of ticker_y first (so their subscriptions are in
place), are stopped (SIGSTOP) while ticker_t runs, go on (SIGCONT), and
take a batch of ticker_z (whose number shows the jump at the end; new runs
of it, a batch each, until both have taken one).

It checks that

  - watch says on stderr that it missed messages, and exactly how many:
    the data messages it printed plus those it says it missed are every
    number from its first to its last (topic_seq, in its JSON);
  - the collector's host reports its loss on error.CONNECTION (instance
    history, operation topics_recv) and in its log; what it stored of
    ticker_t plus what it says it missed covers all of ticker_t's
    messages, and it missed some;
  - the collector's records carry no topic_seq (the host takes it out);
  - the broker counted dropped sends (topics_dropped > 0) and csv_t has
    every tick once: slow subscribers cost the data nothing.
"""

import csv
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS = 150000
BATCHES = TICKS + TICKS // 10  # prices and one book a tenth of the ticks, one a batch

bus = lib.Bus()
workers = "".join(
    "  ticker_%s: {plugin: ticker, symbols: [BTC_USDT], limit: %d, batch: 1, seed: 5, "
    "stream_prefix: %s_}\n" % (run, limit, run) for run, limit in (("y", 1), ("t", TICKS), ("z", 1)))
workers += "  csv_t: {plugin: csv, dir: %s}\n" % bus.path("csv_t")
workers += "  history: {plugin: topics, prefixes: [data., metrics], stream: history}\n"
workers += "  csv_h: {plugin: csv, dir: %s, columns: [topic, ts]}\n" % bus.path("csv_h")
pipelines = "".join("  ticks_%s: {from: ticker_%s, to: [csv_t]}\n" % (r, r) for r in "ytz")
pipelines += "  bus_history: {from: history, to: [csv_h]}\n"
config = bus.write("bus.yaml", bus.config_head(broker_extra=", data_tap: true") + "workers:\n" +
                   workers + "pipelines:\n" + pipelines)


class Errors(threading.Thread):
    """Reads every error.* message as it comes, until told to stop."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"error.")
        self.sock.setsockopt(zmq.SUBSCRIBE, b"metrics")
        self.sock.connect(bus.topics_ep)
        self.errors, self.metrics, self.running = [], 0, True

    def run(self):
        while self.running:
            if self.sock.poll(100):
                topic, body = self.sock.recv_multipart()
                if topic == b"metrics":
                    self.metrics += 1
                else:
                    self.errors.append((topic.decode(), msgpack.unpackb(body, raw=False)))


def history_topics():
    """The topics csv_h stored, in order."""
    rows = []
    for path in sorted(glob.glob(os.path.join(bus.path("csv_h"), "*", "history.csv"))):
        with open(path, newline="") as f:
            rows += [r["topic"] for r in csv.DictReader(f)]
    return rows


def watch_lines():
    with open(bus.path("watch.out"), errors="replace") as f:
        return [json.loads(line) for line in f if line.endswith("}\n")]


def saw(topic):
    """Whether both subscribers have taken a message of `topic`."""
    return (any(m["topic"] == topic for m in watch_lines()) and topic in history_topics())


def run_ticker(name, run=None):
    """Runs collector `name` to its end (with `run`, a new run of that id)."""
    argv = [os.path.join(bus.bin, "dcbus-worker"), "--instance", name, "--config", config]
    bus.start(name, *(argv + (["--run", run] if run else [])))
    status = bus.wait(name, 120)
    bus.check("%s ends by itself with exit 0" % name, status == 0, "status %s" % status)
    delivered, in_flight = bus.wait_delivered(120)
    bus.check("... and the broker delivers all it took", delivered,
              "batches_in_flight %s" % in_flight)


bus.broker(config)
errors = Errors()
errors.start()
bus.check("the error subscriber is in place (it receives metrics)",
          lib.wait_for(lambda: errors.metrics > 0, 10))
for name in ("csv_t", "csv_h", "history"):
    bus.worker(name, config)
    bus.check("%s joins the broker" % name,
              bus.wait_log("broker", 'msg="worker joined" instance=%s ' % name, 10))
watch_out = open(bus.path("watch.out"), "w")
watch_err = open(bus.path("watch.err"), "w")
watch = subprocess.Popen([os.path.join(bus.bin, "dcbus"), "watch", "--topics", bus.topics_ep,
                          "--json", "data.", "metrics"], stdout=watch_out, stderr=watch_err, cwd=bus.dir)
history = bus.procs["history"]

# Both take metrics too: one in each says its subscription is in place.
bus.check("both subscribers' subscriptions are in place (each has taken metrics)",
          lib.wait_for(lambda: any(m["topic"] == "metrics" for m in watch_lines()) and
                       "metrics" in history_topics(), 20))
run_ticker("ticker_y")
bus.check("both subscribers take ticker_y's batch", lib.wait_for(lambda: saw("data.y_prices"), 20))

watch.send_signal(signal.SIGSTOP)
history.send_signal(signal.SIGSTOP)
run_ticker("ticker_t")
watch.send_signal(signal.SIGCONT)
history.send_signal(signal.SIGCONT)
# A subscriber that was stopped takes new messages again only once it has
# drained enough of its queue (libzmq then opens its pipe again): until
# then ticker_z's batch can be one more it misses.  So ticker_z makes new
# runs, a batch each, until both have taken one.
for attempt in range(1, 31):
    run_ticker("ticker_z", "z-%d" % attempt)
    if lib.wait_for(lambda: saw("data.z_prices"), 3):
        break
bus.check("both subscribers go on and take a batch of ticker_z (%d runs)" % attempt,
          saw("data.z_prices"))

watch.send_signal(signal.SIGINT)
watch.wait(10)
watch_out.close()
watch_err.close()
with open(bus.path("watch.err")) as f:
    said = f.read()
lines = [m for m in watch_lines() if m["topic"].startswith("data.")]
seqs = [m["body"].get("topic_seq") for m in lines]
summary = re.search(r"(\d+) messages shown, (\d+) missed \(([^)]*)\)", said)
missed = int(re.search(r"data=(\d+)", summary.group(3)).group(1)) if summary and \
    "data=" in summary.group(3) else 0
bus.check("watch says it missed data messages: %s" % (summary.group(0) if summary else
                                                       said[-300:]), missed > 0)
if missed and all(isinstance(s, int) for s in seqs) and seqs:
    bus.check("... exactly: %d printed + %d missed = the numbers %d..%d"
              % (len(seqs), missed, seqs[0], seqs[-1]),
              len(seqs) + missed == seqs[-1] - seqs[0] + 1 and seqs == sorted(set(seqs)))
    bus.check("... and as many as the jumps in what it printed",
              missed == sum(b - a - 1 for a, b in zip(seqs, seqs[1:])))
    bus.check("... said when they happened: 'missed N messages before this data...'",
              re.search(r"missed \d+ messages before this data\.", said) is not None)
else:
    bus.check("watch printed every data message with its topic_seq", False, said[-300:])

bus.stop("history")
log = bus.log("history")
closed = re.search(r'msg="topics subscription closed".*missed_by_family="[^"]*data=(\d+)', log)
missed_h = int(closed.group(1)) if closed else 0
stored_t = sum(1 for t in history_topics() if t.startswith("data.t_"))
bus.check("the collector's host logs what it missed (missed=%d) and it missed some" % missed_h,
          'msg="topics subscription missed messages"' in log and missed_h > 0)
bus.check("... what it stored of ticker_t (%d) plus what it missed covers all %d of its "
          "messages, and it did not store them all" % (stored_t, BATCHES),
          stored_t + missed_h >= BATCHES and stored_t < BATCHES)
reported = [e for t, e in errors.errors if t.startswith("error.CONNECTION.")
            and e.get("instance") == "history" and e.get("operation") == "topics_recv"]
bus.check("... and reports it on error.CONNECTION (instance history, operation topics_recv)",
          reported and "missed" in reported[0].get("message", ""),
          reported[0].get("message") if reported else "%d errors" % len(errors.errors))
with open(glob.glob(os.path.join(bus.path("csv_h"), "*", "history.csv"))[0], newline="") as f:
    header = next(csv.reader(f))
bus.check("the collector's records are as before: no topic_seq reaches the plugin",
          "topic_seq" not in header, str(header))

stats = lib.stats(bus.bus_ep)
bus.check("the broker counted dropped sends: topics_dropped %s" % stats.get("topics_dropped"),
          (stats.get("topics_dropped") or 0) > 0)
bus.check("its stats hold each family's last number (topic_seqs)",
          isinstance(stats.get("topic_seqs"), dict) and
          stats["topic_seqs"].get("data", 0) >= seqs[-1], stats.get("topic_seqs"))
prices = glob.glob(os.path.join(bus.path("csv_t"), "*", "t_prices.csv"))
if bus.check("csv_t wrote ticker_t's prices", len(prices) == 1, str(prices)):
    ok, message = lib.check_n(prices[0], TICKS)
    bus.check("csv_t: " + message, ok)
errors.running = False
errors.join(2)
bus.finish()
