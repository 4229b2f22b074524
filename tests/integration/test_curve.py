"""test_curve.py -- with security.curve on, only allowed keys get in.

Keys come from `dcbus keygen`.  The broker's two endpoints are CURVE
servers; `allowed/` holds the worker's public certificate only.  Checked:
  - workers with the allowed key: every record of src reaches sink;
  - `dcbus stats` with the allowed key answers; with a key that is not
    allowed, no answer (exit 1);
  - a plaintext client and a CURVE client with a key that is not allowed,
    each saying HELLO as collector src2 and sending DATA for pipeline q:
    no READY, no REPLY, and sink2 receives nothing;
  - a topics subscriber with the allowed key gets the metrics topic; one in
    plaintext and one with a key that is not allowed get nothing.
"""

import os
import subprocess
import sys
import time

import msgpack
import zmq
import zmq.auth

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

bus = lib.Bus()
dcbus = os.path.join(bus.bin, "dcbus")
for name in ("broker", "worker", "rogue"):
    subprocess.check_call([dcbus, "keygen", name, "--dir", bus.path("keys")],
                          stdout=subprocess.DEVNULL)
os.mkdir(bus.path("allowed"))
with open(bus.path("keys", "worker")) as src, open(bus.path("allowed", "worker"), "w") as dst:
    dst.write(src.read())

BODY = """broker: {bus: %s, topics: %s, heartbeat_ms: 200}
plugins_path: [%s]
workers:
  src:   {plugin: mock-source, records: 500, batch: 10, stream: s}
  sink:  {plugin: mock-storage, file: sink.txt}
  src2:  {plugin: mock-source, records: 10}
  sink2: {plugin: mock-storage, file: sink2.txt}
pipelines:
  p: {from: src, to: [sink]}
  q: {from: src2, to: [sink2]}
security: {curve: true, server_cert: keys/broker, client_cert: keys/%s, allowed: allowed}
"""
config = bus.write("c.yaml", BODY % (bus.bus_ep, bus.topics_ep, bus.plugins, "worker"))
rogue_config = bus.write("rogue.yaml", BODY % (bus.bus_ep, bus.topics_ep, bus.plugins, "rogue"))

ctx = zmq.Context.instance()
server_public, _ = zmq.auth.load_certificate(bus.path("keys", "broker"))


def subscriber(cert):
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    if cert:
        public, secret = zmq.auth.load_certificate(bus.path("keys", cert + "_secret"))
        sub.curve_publickey, sub.curve_secretkey, sub.curve_serverkey = public, secret, server_public
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(bus.topics_ep)
    return sub


def intruder(cert):
    """Says HELLO as src2 and sends it a DATA; returns what came back."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if cert:
        public, secret = zmq.auth.load_certificate(bus.path("keys", cert + "_secret"))
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
    sock.connect(bus.bus_ep)
    hello = {"role": "collector", "instance": "src2", "plugin": "mock-source", "replica": 0,
             "abi": 2 << 16, "credit": 16, "pid": 1, "version": "x", "run": "intruder"}
    env = {"v": 1, "stream": "q", "seq": 1, "session": "x", "source": "src2", "ts": 0,
           "records": [{"n": 1}]}
    stats = {"id": 7, "op": "stats"}
    got = []
    for cmd, body in ((b"HELLO", hello), (b"DATA", env), (b"REQUEST", stats)):
        sock.send_multipart([b"DCB1", cmd, msgpack.packb(body)])
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if sock.poll(100):
            got.append(sock.recv_multipart()[1])
    sock.close()
    return got


bus.broker(config)
time.sleep(0.3)
subs = {name: subscriber(cert) for name, cert in
        (("allowed", "worker"), ("plaintext", None), ("rogue", "rogue"))}
bus.worker("sink", config)
bus.worker("sink2", config)
bus.worker("src", config)
bus.check("the collector with the allowed key finished", bus.wait("src", 20) == 0)
# It ends once the broker has spooled its batches: wait for their delivery.
public, secret = zmq.auth.load_certificate(bus.path("keys", "worker_secret"))
delivered, left = lib.wait_delivered(bus.bus_ep, 20, curve=(public, secret, server_public))
bus.check("the broker delivers every batch to the sink", delivered,
          "" if delivered else "batches_in_flight %s after 20 s" % left)
time.sleep(0.5)
with open(bus.path("sink.txt")) as f:
    rows = f.read().split()
bus.check("every record reached the sink over CURVE", len(rows) == 500, "%d rows" % len(rows))

ok = subprocess.run([dcbus, "stats", "--config", config], capture_output=True, text=True,
                    cwd=bus.dir)
bus.check("dcbus stats with the allowed key answers", ok.returncode == 0, ok.stderr.strip())
bad = subprocess.run([dcbus, "stats", "--config", rogue_config], capture_output=True, text=True,
                    cwd=bus.dir)
bus.check("dcbus stats with a key that is not allowed gets no answer",
          bad.returncode == 1 and "no answer" in bad.stderr, bad.stderr.strip())

for cert in (None, "rogue"):
    what = "a plaintext client" if cert is None else "a client with a key that is not allowed"
    got = intruder(cert)
    bus.check("%s gets nothing back (no READY, no REPLY)" % what, got == [], str(got))
time.sleep(0.5)
bus.check("and delivers nothing: sink2 got no record", not os.path.exists(bus.path("sink2.txt"))
          or os.path.getsize(bus.path("sink2.txt")) == 0)

deadline = time.monotonic() + 3
seen = {name: 0 for name in subs}
while time.monotonic() < deadline:
    for name, sub in subs.items():
        while sub.poll(0):
            sub.recv_multipart()
            seen[name] += 1
    time.sleep(0.05)
bus.check("a subscriber with the allowed key gets topics", seen["allowed"] > 0, str(seen))
bus.check("a plaintext subscriber gets nothing", seen["plaintext"] == 0, str(seen))
bus.check("a subscriber with a key that is not allowed gets nothing", seen["rogue"] == 0,
          str(seen))
for sub in subs.values():
    sub.close()
bus.finish()
