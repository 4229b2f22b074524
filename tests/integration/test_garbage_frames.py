"""test_garbage_frames.py -- the broker shrugs off garbage while data flows.

While ticker -> json-validate -> csv runs (300,000 ticks at 40,000 a
second), clients throw at the broker's endpoints everything a broken or
hostile peer could:

  ROUTER (bus), from a client that never registered: random bytes, wrong
  frame counts, a bad signature, the next protocol version (DCB2), an
  unknown command, bodies that are not a msgpack map, HELLOs the broker
  must refuse (bad ABI, unknown instance), and a DATA -- which must be
  answered "unknown_peer";
  ROUTER, from a fake collector registered as a spare collector instance
  (one no process runs): DATA envelopes broken in every field (missing,
  mistyped, truncated, trailing bytes, wrong version, an over-long stream
  name, records that are not maps -- one of those on the ticker's stream
  with a seq far ahead of the ticker's);
  XPUB (topics): junk subscription frames from an XSUB, a socket of the
  wrong type, and raw bytes on both endpoints' ipc socket files.

It checks that each malformed message is counted in the broker's stats
(`malformed` goes up by one, read back on the same socket right after it,
so the broker answered and is alive) and logged, that the broker keeps
publishing topics, and that the data still arrives complete and exact:
the CSV files are byte for byte dcbus-reference's and n is 0..N-1 once
each.
"""

import os
import random
import socket
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS = 300000
BOOKS = TICKS // 10
TOTAL = TICKS + BOOKS
ABI = 2 << 16

bus = lib.Bus()
rng = random.Random(20261123)


def config(name, rate, spare=False):
    """The pipeline; with `spare`, also a collector instance no process
    runs, for the fake collector to register as."""
    text = bus.config_head() + """workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: %d, seed: 3,
           start_ts: 1700000000000000%s}
  validate: {plugin: json-validate, required: [symbol, ts, n]}
  csv: {plugin: csv, dir: %s}
pipelines:
  ticks: {from: ticker, through: [validate], to: [csv]}
""" % (TICKS, ", rate: %d" % rate if rate else "", bus.path("csv"))
    if spare:
        text = text.replace("workers:\n", "workers:\n  spare: {plugin: mock-source}\n")
        text += "  spare: {from: spare, through: [validate], to: [csv]}\n"
    return bus.write(name, text)


def dealer(identity=None):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if identity:
        s.setsockopt(zmq.IDENTITY, identity)
    s.connect(bus.bus_ep)
    return s


def request_stats(sock, req_id):
    """Stats asked on `sock` itself: the broker reads a peer's messages in
    order, so the answer comes after whatever was sent before it."""
    sock.send_multipart([b"DCB1", b"REQUEST", msgpack.packb({"id": req_id, "op": "stats"})])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if sock.poll(100):
            frames = sock.recv_multipart()
            if len(frames) == 3 and frames[1] == b"REPLY":
                reply = msgpack.unpackb(frames[2], raw=False)
                if reply.get("id") == req_id:
                    return reply["result"]
    return None


def expect_reply(sock, command, code=None):
    """Waits for `command` (with body code `code`, if given); True if it came."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if sock.poll(100):
            frames = sock.recv_multipart()
            if len(frames) == 3 and frames[1] == command:
                return code is None or msgpack.unpackb(frames[2], raw=False).get("code") == code
    return False


class Counter:
    """Sends one malformed message at a time and checks it was counted."""

    def __init__(self):
        self.req = 0
        self.expected = None

    def baseline(self, sock):
        self.req += 1
        result = request_stats(sock, self.req)
        if result is None:
            bus.check("the broker answers stats", False)
            bus.finish()
        self.expected = result["malformed"]

    def malformed(self, sock, what, frames):
        sock.send_multipart(frames)
        self.expected += 1
        self.req += 1
        result = request_stats(sock, self.req)
        got = result["malformed"] if result else None
        bus.check("dropped and counted as malformed: %s" % what, got == self.expected,
                  "malformed %s, expected %d" % (got, self.expected))
        self.expected = got if got is not None else self.expected


def envelope(**fields):
    env = {"v": 1, "stream": "prices", "seq": 1 << 62, "session": "x", "source": "ticker",
           "ts": 0, "records": [{"symbol": "X", "ts": 0, "n": 0}]}
    env.update(fields)
    return {k: v for k, v in env.items() if v is not None}


def throw_at_router(counter):
    c = dealer()
    counter.baseline(c)
    hello = msgpack.packb({"role": "collector", "instance": "ticker", "plugin": "ticker",
                           "replica": 7, "abi": ABI, "credit": 4})
    cases = [
        ("random bytes in one frame", [bytes(rng.getrandbits(8) for _ in range(64))]),
        ("an empty frame", [b""]),
        ("two frames", [b"DCB1", b"HELLO"]),
        ("four frames", [b"DCB1", b"HELLO", hello, b"extra"]),
        ("nine random frames", [os.urandom(rng.randint(0, 40)) for _ in range(9)]),
        ("a bad signature", [b"XXXX", b"HELLO", hello]),
        ("protocol version DCB2", [b"DCB2", b"HELLO", hello]),
        ("an unknown command", [b"DCB1", b"FROB", msgpack.packb({})]),
        ("an empty command", [b"DCB1", b"", msgpack.packb({})]),
        ("a body that is an array", [b"DCB1", b"HELLO", msgpack.packb([1, 2, 3])]),
        ("a body that is not msgpack", [b"DCB1", b"REQUEST", b"\xc1\xc1\xc1"]),
        ("an empty body", [b"DCB1", b"HEARTBEAT", b""]),
    ]
    for what, frames in cases:
        counter.malformed(c, what, frames)

    before = counter.expected
    c.send_multipart([b"DCB1", b"HELLO", b"\x85\xa4role\xa9coll"])
    refused = expect_reply(c, b"ERROR", "refused")
    counter.baseline(c)
    bus.check("a HELLO with a truncated map body is refused or counted as malformed",
              refused or counter.expected == before + 1,
              "refused" if refused else "malformed %d -> %d" % (before, counter.expected))
    c.send_multipart([b"DCB1", b"HELLO", msgpack.packb(
        {"role": "collector", "instance": "ticker", "plugin": "ticker", "abi": 3 << 16})])
    bus.check("a HELLO of another ABI major version is refused",
              expect_reply(c, b"ERROR", "refused"))
    c.send_multipart([b"DCB1", b"HELLO", msgpack.packb(
        {"role": "processor", "instance": "nobody", "plugin": "x", "abi": ABI})])
    bus.check("a HELLO for an instance the config lacks is refused",
              expect_reply(c, b"ERROR", "refused"))
    c.send_multipart([b"DCB1", b"DATA", msgpack.packb({"v": 1, "stream": "prices"})])
    bus.check("DATA from a peer that never said HELLO is answered unknown_peer",
              expect_reply(c, b"ERROR", "unknown_peer"))
    c.close()


def throw_as_fake_collector(counter):
    c = dealer(b"fake-collector")
    c.send_multipart([b"DCB1", b"HELLO", msgpack.packb(
        {"role": "collector", "instance": "spare", "plugin": "mock-source", "replica": 0,
         "abi": ABI, "credit": 4})])
    if not bus.check("a fake collector registers (as the spare pipeline's collector)",
                     expect_reply(c, b"READY")):
        return
    counter.baseline(c)
    # Broken in the header, which the broker reads: refused there.
    header_cases = [
        ("DATA whose envelope is an array", msgpack.packb([1, 2])),
        ("DATA without seq", msgpack.packb(envelope(seq=None))),
        ("DATA without records", msgpack.packb(envelope(records=None))),
        ("DATA with a string seq", msgpack.packb(envelope(seq="12"))),
        ("DATA with a negative seq", msgpack.packb(envelope(seq=-5))),
        ("DATA with envelope version 2", msgpack.packb(envelope(v=2))),
        ("DATA with an empty stream name", msgpack.packb(envelope(stream=""))),
        ("DATA with a 300-character stream name", msgpack.packb(envelope(stream="s" * 300))),
    ]
    for what, body in header_cases:
        counter.malformed(c, what, [b"DCB1", b"DATA", body])
    # Broken past the header: the broker routes on the header alone, so these
    # may be refused by the broker or by the first worker that reads them;
    # either way nothing of them may reach the output or disturb the
    # ticker's stream -- the final checks say whether that held.
    good = msgpack.packb(envelope(stream="junk", seq=1))
    record_cases = [
        ("DATA with a truncated records array", good[:-6]),
        ("DATA with trailing bytes", msgpack.packb(envelope(stream="junk", seq=2)) + b"\x00\x01"),
        ("DATA whose records are not maps",
         msgpack.packb(envelope(stream="junk", seq=3, records=[1, "x", [2]]))),
        ("DATA whose records are not maps, on the ticker's stream, with seq 2^62",
         msgpack.packb(envelope(records=[1, "x", [2]]))),
    ]
    for what, body in record_cases:
        before = counter.expected
        c.send_multipart([b"DCB1", b"DATA", body])
        counter.baseline(c)
        print("sent: %s -- %s" % (what, "counted as malformed by the broker"
                                  if counter.expected > before else "routed on by the broker"))
    c.send_multipart([b"DCB1", b"BYE", msgpack.packb({})])
    c.close()


def throw_at_topics(counter):
    """Junk on the topics endpoint: it arrives asynchronously, so the check
    is only that the broker counted some of it."""
    ctx = zmq.Context.instance()
    x = ctx.socket(zmq.XSUB)
    x.setsockopt(zmq.LINGER, 0)
    x.connect(bus.topics_ep)
    for frame in [b"\x01", b"\x00never-subscribed", b"\x05not a subscription", b"",
                  os.urandom(2000), b"\x01" + os.urandom(300)]:
        x.send(frame)
    x.send_multipart([b"\x01event.", b"second frame", b"third"])
    wrong = ctx.socket(zmq.DEALER)  # not a subscriber at all: the handshake fails
    wrong.setsockopt(zmq.LINGER, 0)
    wrong.connect(bus.topics_ep)
    wrong.send_multipart([b"DCB1", b"HELLO", b"\x80"], zmq.NOBLOCK)
    raw_sent = 0
    for ep in (bus.topics_ep, bus.bus_ep):  # bytes that are not ZMTP at all
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(ep[len("ipc://"):])
            s.sendall(os.urandom(4096))
            raw_sent += 1
        except OSError:
            pass
        finally:
            s.close()
    time.sleep(0.5)
    x.close()
    wrong.close()
    bus.check("raw bytes written to the topics and bus socket files", raw_sent == 2)
    before = counter.expected
    d = dealer()
    counter.baseline(d)
    d.close()
    bus.check("junk on the topics endpoint is counted as malformed", counter.expected > before,
              "malformed %d before, %d after" % (before, counter.expected))


def topics_still_published():
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(bus.topics_ep)
    got = sub.poll(3000) != 0
    topic = sub.recv_multipart()[0].decode(errors="replace") if got else None
    sub.close()
    bus.check("the topics endpoint still publishes", got, "got %s" % topic)


def main():
    cfg = config("bus.yaml", 40000, spare=True)
    bus.broker(cfg)
    bus.worker("csv", cfg)
    bus.worker("validate", cfg)
    for name in ("csv", "validate"):
        if not bus.wait_log("broker", 'msg="worker joined" instance=%s ' % name, 10):
            bus.check("%s joins the broker" % name, False)
            bus.finish()
    t0 = time.monotonic()
    bus.worker("ticker", cfg)
    bus.wait_log("broker", 'msg="worker joined" instance=ticker ', 10)

    counter = Counter()
    throw_at_router(counter)
    throw_as_fake_collector(counter)
    throw_at_topics(counter)
    bus.check("all of it happened while data flowed", bus.procs["ticker"].poll() is None,
              "%.1f s into the run" % (time.monotonic() - t0))
    topics_still_published()

    status = bus.wait("ticker", 60)
    bus.check("the collector ends by itself with exit 0", status == 0,
              "status %s after %.1f s" % (status, time.monotonic() - t0))
    delivered, in_flight = bus.wait_delivered(60)
    bus.check("the broker delivers every batch to the sink", delivered,
              "%.1f s into the run" % (time.monotonic() - t0) if delivered
              else "batches_in_flight %s after 60 s" % in_flight)
    try:
        result = lib.stats(bus.bus_ep)
    except (TimeoutError, RuntimeError) as e:
        bus.check("the broker answers stats at the end", False, str(e))
        bus.finish()
    bus.check("stats: the workers' own traffic was never taken for malformed",
              result["malformed"] == counter.expected,
              "malformed %d at the end, %d after the garbage" % (result["malformed"],
                                                                 counter.expected))
    bus.check("stats: no batch left in flight", result["batches_in_flight"] == 0,
              str(result["batches_in_flight"]))
    sink = lib.instance_stats(result, "csv")["records_out"]
    bus.check("stats: the sink acknowledged %d records" % TOTAL, sink == TOTAL, str(sink))
    bus.check("the broker log says \"malformed message dropped\"",
              'msg="malformed message dropped"' in bus.log("broker"))
    for name in ("validate", "csv", "broker"):
        status = bus.stop(name)
        bus.check("%s stops on SIGTERM with exit 0" % name, status == 0, "status %s" % status)

    bus.check("dcbus-reference runs the same pipeline in process",
              bus.reference(config("reference.yaml", 0)) == 0)
    ok, messages = lib.compare_sessions(bus.path("csv"))
    for m in messages:
        bus.check(m, "identical" in m)
    for stream, rows in (("prices", TICKS), ("orderbook", BOOKS)):
        files = [os.path.join(bus.path("csv"), d, stream + ".csv")
                 for d in os.listdir(bus.path("csv"))
                 if d != "reference" and os.path.isdir(os.path.join(bus.path("csv"), d))]
        if len(files) != 1 or not os.path.exists(files[0]):
            bus.check("one %s.csv written by the bus" % stream, False, str(files))
            continue
        ok, message = lib.check_n(files[0], rows)
        bus.check(message, ok)
    bus.finish()


main()
