"""test_topics_python_example.py -- the Python monitoring client of
docs/protocol.md (examples/monitor.py) works against a running pipeline.

ticker (20,000 ticks at 10,000 a second) -> json-validate (required:
[price], so every order-book record is a VALIDATION error) -> csv, with
examples/monitor.py subscribed to events, errors, tasks, sessions and
metrics; a session is started and ended with `dcbus sessions` meanwhile.
It checks that the example

  - asks the broker for its tasks over the bus endpoint before anything
    runs (and gets an answer);
  - prints the run's events (COLLECTION_START, PROCESSING_START,
    STORAGE_COMPLETE), its VALIDATION errors with their message, its tasks'
    progress bars up to COMPLETED at 100 %, the observation session's start
    (with its metadata) and end, and the metrics;
  - stops cleanly on SIGINT, and by itself after --count messages;
  - with --client-cert and --server-cert, works against a broker with
    security.curve on (and gets nothing from it without them);
  - is, byte for byte, the example printed in docs/protocol.md.
"""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

SOURCE = os.environ.get("DCBUS_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MONITOR = os.path.join(SOURCE, "examples", "monitor.py")
PYTHON = "/usr/bin/python3"  # Debian's, with python3-zmq and python3-msgpack

bus = lib.Bus()
config = bus.write("bus.yaml", bus.config_head() + """workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: 20000, rate: 10000,
           batch: 200, seed: 4}
  validate: {plugin: json-validate, required: [price]}
  csv: {plugin: csv, dir: %s}
pipelines:
  ticks: {from: ticker, through: [validate], to: [csv]}
""" % bus.path("csv"))
dcbus = os.path.join(bus.bin, "dcbus")

bus.broker(config)
for name in ("csv", "validate"):
    bus.worker(name, config)
    bus.check("%s joins the broker" % name,
              bus.wait_log("broker", 'msg="worker joined" instance=%s ' % name, 10))

bus.start("monitor", PYTHON, "-u", MONITOR, "--topics", bus.topics_ep, "--bus", bus.bus_ep,
          "--timeout", "60", "event.", "error.", "task.", "session.", "metrics")
if not bus.check("the monitor subscribes (it prints the metrics topic)",
                 bus.wait_log("monitor", " metrics up ", 10)):
    bus.finish()
bus.worker("ticker", config)
bus.check("the ticker ends by itself with exit 0", bus.wait("ticker", 30) == 0)
bus.check("the monitor sees the run's pipeline task complete",
          bus.wait_log("monitor", "/ticks pipeline ticks [####################] 100%", 10))
for argv in (["start", "observation", "--meta", "target=M31"], ["end"]):
    rc = subprocess.call([dcbus, "sessions", "--broker", bus.bus_ep] + argv,
                         stdout=subprocess.DEVNULL)
    bus.check("dcbus sessions %s" % argv[0], rc == 0)
bus.check("the monitor sees the observation end",
          bus.wait_log("monitor", "session.end.observation", 10))
bus.procs["monitor"].send_signal(signal.SIGINT)
bus.check("the monitor stops cleanly on SIGINT", bus.wait("monitor", 5) == 0)

out = bus.log("monitor")
expected = [
    ("asked the broker for its tasks first", r"\A0 tasks known, 0 running\n"),
    ("COLLECTION_START", r" event\.COLLECTION_START\.ticker ticker \{'pipeline': 'ticks'"),
    ("PROCESSING_START", r" event\.PROCESSING_START\.ticks ticks "),
    ("STORAGE_COMPLETE", r" event\.STORAGE_COMPLETE\.ticks ticks "),
    ("VALIDATION errors with their message and batch",
     r" error\.VALIDATION\.processing processing: required field 'price' is missing "
     r"orderbook/\d+ \{'field': 'price'"),
    ("a running task's progress bar",
     r" task\.RUNNING\.ticker-\d+ collection ticker \[#*\.+\] +\d+% records=\d+"),
    ("the collection task COMPLETED at 100 %",
     r" task\.COMPLETED\.ticker-\d+ collection ticker \[#{20}\] 100% records=22000"),
    ("the observation's start with its metadata",
     r" session\.start\.observation observation-\S+ active records=0 meta=\{'target': 'M31'\}"),
    ("the observation's end", r" session\.end\.observation observation-\S+ completed "),
    ("the metrics", r" metrics up \d+ s, \d+ batches in flight"),
]
for what, pattern in expected:
    bus.check("the monitor prints %s" % what, re.search(pattern, out) is not None, pattern)
errors = len(re.findall(r" error\.VALIDATION\.processing ", out))
bus.check("the monitor prints every VALIDATION error (%d for 2000 order-book records)" % errors,
          errors == 2000)

t0 = time.monotonic()
done = subprocess.run([PYTHON, MONITOR, "--topics", bus.topics_ep, "--bus", bus.bus_ep,
                       "--count", "2", "--timeout", "10", "metrics"],
                      capture_output=True, text=True, timeout=20)
lines = [l for l in done.stdout.splitlines() if " metrics " in l]
bus.check("--count 2 stops after two messages (%.1f s)" % (time.monotonic() - t0),
          done.returncode == 0 and len(lines) == 2, done.stdout + done.stderr)

# Against a broker with CURVE on: the example with the config's keys gets
# in, without them it gets nothing (not even an answer to its request).
keys = bus.path("keys")
for name in ("broker", "client"):
    subprocess.run([dcbus, "keygen", name, "--dir", keys], check=True, capture_output=True)
os.makedirs(os.path.join(keys, "allowed"))
with open(os.path.join(keys, "client")) as src, \
        open(os.path.join(keys, "allowed", "client"), "w") as dst:
    dst.write(src.read())
secure_bus, secure_topics = bus.bus_ep + "2", bus.topics_ep + "2"
secure = bus.write("secure.yaml", """broker: {bus: %s, topics: %s, spool: spool2}
plugins_path: [%s]
security: {curve: true, server_cert: %s/broker, client_cert: %s/client, allowed: %s/allowed}
workers:
  ticker: {plugin: ticker}
""" % (secure_bus, secure_topics, bus.plugins, keys, keys, keys))
bus.start("secure_broker", os.path.join(bus.bin, "dcbus-broker"), "--config", secure)
bus.check("a broker with CURVE starts", bus.wait_log("secure_broker", "security=curve", 10))
base = [PYTHON, MONITOR, "--topics", secure_topics, "--bus", secure_bus, "--count", "1",
        "--timeout", "5", "metrics"]
keyed = subprocess.run(base + ["--client-cert", os.path.join(keys, "client"),
                               "--server-cert", os.path.join(keys, "broker")],
                       capture_output=True, text=True, timeout=20)
bus.check("with the config's keys the example gets answers and topics under CURVE",
          keyed.returncode == 0 and keyed.stdout.startswith("0 tasks known")
          and " metrics up " in keyed.stdout, keyed.stdout + keyed.stderr)
plain = subprocess.run(base, capture_output=True, text=True, timeout=20)
bus.check("without keys it gets nothing from that broker",
          "no broker answers" in plain.stderr and " metrics " not in plain.stdout,
          plain.stdout + plain.stderr)
for argv, rc, what in (
        (["--config", secure], 0, "dcbus watch --config presents the config's keys"),
        (["--topics", secure_topics], 1, "dcbus watch without them gets nothing")):
    done = subprocess.run([dcbus, "watch", "metrics", "--count", "1", "--timeout", "3"] + argv,
                          capture_output=True, text=True, timeout=20, cwd=bus.dir)
    bus.check("%s (exit %d)" % (what, done.returncode), done.returncode == rc,
              done.stdout + done.stderr)

# The example in the documentation is this very file.
with open(os.path.join(SOURCE, "docs", "protocol.md")) as f:
    doc = f.read()
with open(MONITOR) as f:
    code = f.read()
blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
bus.check("docs/protocol.md prints examples/monitor.py as it is", code in blocks)
bus.finish()
