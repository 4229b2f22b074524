"""test_curve_instances.py -- with security.clients, a CURVE key registers
only as the instance (or role) it is bound to.

`dcbus keygen --config` makes the broker's key, the command-line clients'
(cli) and one per worker, and prints the security section that binds each
key to its instance; the test pastes it into the config.  Checked:
  - a worker `src` started with the key of `sink` (another instance's) is
    refused at HELLO with the reason, exits 2, and delivers nothing; the
    broker counts it (refused_keys) and publishes it on error.VALIDATION;
  - a client with the processor's key saying HELLO as the sink, and one
    with the cli key saying HELLO as src, are refused (ERROR, code
    refused) and get no READY;
  - the rightful workers, each with its own key, deliver every record of
    src to sink exactly once;
  - `dcbus stats` with the cli key answers.
"""

import os
import shutil
import subprocess
import sys
import time

import msgpack
import zmq
import zmq.auth

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RECORDS = 500
bus = lib.Bus()
dcbus = os.path.join(bus.bin, "dcbus")
BODY = """broker: {bus: %s, topics: %s, heartbeat_ms: 200}
plugins_path: [%s]
workers:
  src:  {plugin: mock-source, records: %d, batch: 10, stream: s}
  proc: {plugin: mock-processor}
  sink: {plugin: mock-storage, file: sink.txt}
pipelines:
  p: {from: src, through: [proc], to: [sink]}
""" % (bus.bus_ep, bus.topics_ep, bus.plugins, RECORDS)
plain = bus.write("plain.yaml", BODY)
gen = subprocess.run([dcbus, "keygen", "--config", plain, "--dir", "keys"], cwd=bus.dir,
                     capture_output=True, text=True)
bus.check("dcbus keygen --config makes a key per instance", gen.returncode == 0 and all(
    os.path.exists(bus.path("keys", n + "_secret")) for n in ("broker", "cli", "src", "proc", "sink")),
    gen.stderr.strip())
section = gen.stdout
bus.check("and prints a security section binding each key to its instance",
          all(("    %s: \"" % n) in section for n in ("cli", "src", "proc", "sink")), section)
config = bus.write("c.yaml", BODY + section)
# The impostor: src's own key file replaced by a copy of sink's.
os.mkdir(bus.path("stolen"))
for suffix in ("", "_secret"):
    shutil.copy(bus.path("keys", "sink" + suffix), bus.path("stolen", "src" + suffix))
stolen = bus.write("stolen.yaml", BODY + section.replace("keys: keys", "keys: stolen"))

ctx = zmq.Context.instance()
server_public, _ = zmq.auth.load_certificate(bus.path("keys", "broker"))


def curve_of(name):
    public, secret = zmq.auth.load_certificate(bus.path("keys", name + "_secret"))
    return public, secret, server_public


def hello_as(key_name, instance, role):
    """Says HELLO as `instance` in `role` with the key of `key_name`;
    returns the (command, body) replies."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = curve_of(key_name)
    sock.connect(bus.bus_ep)
    hello = {"role": role, "instance": instance, "plugin": "mock-storage", "replica": 0,
             "abi": 2 << 16, "credit": 16, "pid": 1, "version": "x", "run": "intruder"}
    sock.send_multipart([b"DCB1", b"HELLO", msgpack.packb(hello)])
    got = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not got:
        if sock.poll(100):
            frames = sock.recv_multipart()
            got.append((frames[1], msgpack.unpackb(frames[2], raw=False)))
    sock.close()
    return got


def refused(got, needle):
    return (len(got) == 1 and got[0][0] == b"ERROR" and got[0][1].get("code") == "refused"
            and needle in got[0][1].get("message", ""))


errors = ctx.socket(zmq.SUB)
errors.setsockopt(zmq.LINGER, 0)
errors.curve_publickey, errors.curve_secretkey, errors.curve_serverkey = curve_of("cli")
errors.setsockopt(zmq.SUBSCRIBE, b"error.")

bus.broker(config)
errors.connect(bus.topics_ep)
time.sleep(0.5)
bus.worker("sink", config)
bus.worker("proc", config)
bus.check("the sink joins with its own key", bus.wait_log("broker", "instance=sink", 10))
bus.check("the processor joins with its own key", bus.wait_log("broker", "instance=proc", 10))

bus.start("impostor", os.path.join(bus.bin, "dcbus-worker"), "--instance", "src", "--config",
          stolen)
status = bus.wait("impostor", 10)
bus.check("a worker with another instance's key is refused and exits 2", status == 2,
          "status %s" % status)
bus.check("its log says why", "the CURVE key of 'sink' may not register as collector 'src'"
          in bus.log("impostor"), bus.log("impostor")[-300:])

got = hello_as("proc", "sink", "storage")
bus.check("the processor's key cannot register as the sink",
          refused(got, "the CURVE key of 'proc' may not register as storage 'sink'"), str(got))
got = hello_as("cli", "src", "collector")
bus.check("the command-line key cannot register as a collector",
          refused(got, "the CURVE key of 'cli' may not register"), str(got))

seen = []
deadline = time.monotonic() + 3
while time.monotonic() < deadline and len(seen) < 3:
    if errors.poll(100):
        topic, body = errors.recv_multipart()
        seen.append((topic, msgpack.unpackb(body, raw=False)))
bus.check("each refusal is on error.VALIDATION.broker",
          len(seen) == 3 and all(t == b"error.VALIDATION.broker" and "may not register" in
                                 b["message"] for t, b in seen), str(seen))
s = lib.stats(bus.bus_ep, curve=curve_of("cli"))
bus.check("the broker counts them (refused_keys 3)", s.get("refused_keys") == 3,
          str(s.get("refused_keys")))
bus.check("the impostor delivered nothing", not os.path.exists(bus.path("sink.txt"))
          or os.path.getsize(bus.path("sink.txt")) == 0)

bus.worker("src", config)
bus.check("the rightful collector finishes", bus.wait("src", 30) == 0)
delivered, left = lib.wait_delivered(bus.bus_ep, 30, curve=curve_of("cli"))
bus.check("the broker delivers every batch", delivered, "in flight %s" % left)
time.sleep(0.5)
with open(bus.path("sink.txt")) as f:
    rows = f.read().split()
bus.check("every record of the rightful collector arrives exactly once",
          len(rows) == RECORDS and len(set(rows)) == RECORDS, "%d rows, %d distinct"
          % (len(rows), len(set(rows))))
ok = subprocess.run([dcbus, "stats", "--config", config], capture_output=True, text=True,
                    cwd=bus.dir)
bus.check("dcbus stats with the cli key answers", ok.returncode == 0, ok.stderr.strip())
errors.close()
bus.finish()
