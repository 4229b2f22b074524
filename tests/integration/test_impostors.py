"""test_impostors.py -- clients that claim to be workers they are not.

In plaintext mode the broker knows a worker by what its HELLO says.  A
client that says HELLO as a running worker must not take its place (and
its acknowledgements), a replica the config does not have must not
register, and a collector's seq may not jump so far ahead that the
stream's real batches look old.  Each refusal is an error on error.*,
counted in the stats; none of it may cost the real pipeline a row.

While ticker -> json-validate -> csv runs (300,000 ticks at 30,000 a
second; heartbeat time-out 20 s, so nothing here is decided by a worker
timing out), a client:
  - says HELLO as `ticker` (no token, a made-up token), as `validate`, as
    `csv`: refused as busy, the live ones keep their place;
  - says HELLO as csv replica 9 (the config has one), 20 times: refused;
  - sends DATA on the ticker's stream without a HELLO: not acknowledged;
  - registers as the collector `spare` (nobody runs it), sends seq 100,
    then seq 100 + max_seq_gap + 1 and 2^63: the first is acknowledged,
    the other two refused and never acknowledged.
The validate worker is killed with SIGKILL and started again as its
supervisor would, with the next start token of its secret: it takes the
dead one's place at once ("replaced by a new process"), not after the
time-out.  At the end: the ticker ended by itself, every batch reached the
sink, the CSV files are byte for byte dcbus-reference's, the error topic
carried the refusals, and the stats count them (refused_hellos,
refused_batches).
"""

import os
import signal
import subprocess
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS = 300000
BOOKS = TICKS // 10
ABI = 2 << 16
MAX_SEQ_GAP = 1000  # the default: max(1000, 4 x credit 16)
SECRET = "0123456789abcdef0123456789abcdef"

bus = lib.Bus()


def config(name, rate, spare):
    text = bus.config_head(broker_extra=", heartbeat_timeout_ms: 20000") + """workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: %d, seed: 5,
           start_ts: 1700000000000000%s}
  validate: {plugin: json-validate, required: [symbol, ts, n]}
  csv: {plugin: csv, dir: %s}
""" % (TICKS, ", rate: %d" % rate if rate else "", bus.path("csv"))
    if spare:
        text += """  spare: {plugin: mock-source, records: 1}
  spare-sink: {plugin: mock-storage, file: %s}
""" % bus.path("spare.txt")
    text += "pipelines:\n  ticks: {from: ticker, through: [validate], to: [csv]}\n"
    if spare:
        text += "  spare: {from: spare, to: [spare-sink]}\n"
    return bus.write(name, text)


def dealer(identity):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IDENTITY, identity)
    s.connect(bus.bus_ep)
    return s


def reply(sock, timeout_s=5):
    """The next (command, body) from the broker, heartbeats skipped; or None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sock.poll(100):
            frames = sock.recv_multipart()
            if len(frames) == 3 and frames[1] != b"HEARTBEAT":
                return frames[1], msgpack.unpackb(frames[2], raw=False)
    return None


def hello(sock, role, instance, replica=0, token=None):
    body = {"role": role, "instance": instance, "plugin": "x", "replica": replica,
            "abi": ABI, "credit": 16}
    if token is not None:
        body["token"] = token
    sock.send_multipart([b"DCB1", b"HELLO", msgpack.packb(body)])
    return reply(sock)


def refused_hello(what, role, instance, replica, token, code):
    s = dealer(("impostor-%s-%d-%s" % (instance, replica, token)).encode())
    got = hello(s, role, instance, replica, token)
    s.close()
    ok = got is not None and got[0] == b"ERROR" and got[1].get("code") == code
    bus.check("%s: refused (%s)" % (what, code), ok, repr(got))
    return 1


def envelope(stream, seq, source):
    return msgpack.packb({"v": 1, "stream": stream, "seq": seq, "session": "x",
                          "source": source, "ts": 0,
                          "records": [{"symbol": "X", "ts": 0, "n": 0}]})


def impostors():
    """Returns how many HELLOs it had refused."""
    refused = 0
    refused += refused_hello("HELLO as the live collector ticker, no token", "collector",
                             "ticker", 0, None, "busy")
    refused += refused_hello("HELLO as ticker with a made-up token", "collector", "ticker", 0,
                             "cafe.7", "busy")
    refused += refused_hello("HELLO as the live processor validate, another secret",
                             "processor", "validate", 0, "beef.9", "busy")
    refused += refused_hello("HELLO as validate, its secret with an earlier start", "processor",
                             "validate", 0, SECRET + ".0", "busy")
    refused += refused_hello("HELLO as the live sink csv", "storage", "csv", 0, None, "busy")
    ok = 0
    for i in range(20):
        s = dealer(b"replica-nine-%d" % i)
        got = hello(s, "storage", "csv", 9)
        s.close()
        ok += got is not None and got[0] == b"ERROR" and got[1].get("code") == "refused"
    bus.check("HELLO as csv replica 9 (the config has one), 20 times: refused each time",
              ok == 20, "%d of 20" % ok)
    refused += 20

    s = dealer(b"no-hello")
    s.send_multipart([b"DCB1", b"DATA", envelope("prices", 1 << 62, "ticker")])
    got = reply(s)
    s.close()
    bus.check("DATA as ticker without a HELLO: answered unknown_peer, not acknowledged",
              got is not None and got[0] == b"ERROR" and got[1].get("code") == "unknown_peer",
              repr(got))
    return refused


def forged_seqs():
    """Registers as `spare`, which nobody runs, and sends seqs too far ahead."""
    s = dealer(b"spare-client")
    got = hello(s, "collector", "spare")
    if not bus.check("a client registers as the collector spare, which nobody runs",
                     got is not None and got[0] == b"READY", repr(got)):
        return
    s.send_multipart([b"DCB1", b"DATA", envelope("spare-s", 100, "spare")])
    got = reply(s)
    bus.check("its batch seq 100 is acknowledged", got is not None and got[0] == b"ACK"
              and got[1].get("seq") == 100, repr(got))
    for seq in (100 + MAX_SEQ_GAP + 1, 1 << 63):
        s.send_multipart([b"DCB1", b"DATA", envelope("spare-s", seq, "spare")])
        got = reply(s)
        bus.check("seq %d on the same stream (max_seq_gap %d): refused, not acknowledged"
                  % (seq, MAX_SEQ_GAP),
                  got is not None and got[0] == b"ERROR" and got[1].get("code") == "refused"
                  and "max_seq_gap" in got[1].get("message", ""), repr(got))
    s.send_multipart([b"DCB1", b"BYE", msgpack.packb({"reason": "done"})])
    s.close()


def restart_validate(cfg):
    """SIGKILL, then a start with the next token of the same secret."""
    bus.procs["validate"].send_signal(signal.SIGKILL)
    bus.procs["validate"].wait()
    os.environ["DCBUS_WORKER_TOKEN"] = SECRET + ".1"
    bus.worker("validate", cfg)
    del os.environ["DCBUS_WORKER_TOKEN"]
    left = bus.wait_log("broker", 'msg="worker left" instance=validate replica=0 '
                        'reason="replaced by a new process"', 15)
    bus.check("validate killed and restarted with its next start token: it takes the dead "
              "one's place at once, before the time-out", left)


def error_messages(sub):
    msgs = []
    while sub.poll(200):
        topic, body = sub.recv_multipart()
        if topic.startswith(b"error."):
            msgs.append((topic.decode(), msgpack.unpackb(body, raw=False)))
    return msgs


def main():
    cfg = config("bus.yaml", 30000, True)
    bus.broker(cfg)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"error.")
    sub.setsockopt(zmq.SUBSCRIBE, b"session.")
    sub.connect(bus.topics_ep)
    # The broker tells a new subscriber the active session: once that came,
    # the subscription is in place (libzmq attaches it only while the
    # socket is used), and the errors after it queue up here.
    welcomed = False
    deadline = time.monotonic() + 10
    while not welcomed and time.monotonic() < deadline:
        welcomed = sub.poll(100) and sub.recv_multipart()[0].startswith(b"session.")
    bus.check("subscribed to error.* on the topics endpoint", welcomed)
    bus.worker("csv", cfg)
    bus.worker("spare-sink", cfg)
    os.environ["DCBUS_WORKER_TOKEN"] = SECRET + ".0"
    bus.worker("validate", cfg)
    del os.environ["DCBUS_WORKER_TOKEN"]
    for name in ("csv", "validate", "spare-sink"):
        bus.wait_log("broker", 'msg="worker joined" instance=%s ' % name, 10)
    t0 = time.monotonic()
    bus.worker("ticker", cfg)
    bus.wait_log("broker", 'msg="worker joined" instance=ticker ', 10)

    restart_validate(cfg)
    refused = impostors()
    forged_seqs()
    bus.check("all that happened while the real collector ran",
              bus.procs["ticker"].poll() is None, "%.1f s into the run" % (time.monotonic() - t0))

    status = bus.wait("ticker", 60)
    bus.check("the real collector ends by itself with exit 0", status == 0,
              "status %s after %.1f s" % (status, time.monotonic() - t0))
    delivered, in_flight = bus.wait_delivered(60)
    bus.check("the broker delivers every batch to the sinks", delivered,
              "batches_in_flight %s" % in_flight)
    result = lib.stats(bus.bus_ep)
    sink = lib.instance_stats(result, "csv")["records_out"]
    bus.check("stats: the sink acknowledged %d records" % (TICKS + BOOKS), sink == TICKS + BOOKS,
              str(sink))
    bus.check("stats: refused_hellos counts the %d refused HELLOs" % refused,
              result.get("refused_hellos") == refused, str(result.get("refused_hellos")))
    bus.check("stats: refused_batches counts the 2 forged seqs",
              result.get("refused_batches") == 2, str(result.get("refused_batches")))
    table = subprocess.run([os.path.join(bus.bin, "dcbus"), "stats", "--broker", bus.bus_ep],
                           capture_output=True, text=True, timeout=30).stdout
    bus.check("dcbus stats prints the refusals",
              "refused: %d HELLOs, 0 for their key, 2 batches" % refused in table,
              table.splitlines()[1] if len(table.splitlines()) > 1 else table)
    bus.check("stats: one replica each of ticker, validate and csv",
              all(lib.instance_stats(result, n)["replicas"] <= 1
                  for n in ("ticker", "validate", "csv")))

    msgs = error_messages(sub)
    sub.close()
    busy = [m for t, m in msgs if t == "error.VALIDATION.broker"
            and "connected and alive" in m.get("message", "")]
    out_of_range = [m for t, m in msgs if t == "error.VALIDATION.broker"
                    and "replica 9 of csv" in m.get("message", "")]
    gaps = [m for t, m in msgs if t == "error.VALIDATION.broker"
            and "max_seq_gap" in m.get("message", "") and m.get("stream") == "spare-s"]
    bus.check("error topic: each busy HELLO refused", len(busy) == 5, "%d" % len(busy))
    bus.check("error topic: each out-of-range replica refused", len(out_of_range) == 20,
              "%d" % len(out_of_range))
    bus.check("error topic: both forged seqs refused, naming the batch", len(gaps) == 2,
              "%d" % len(gaps))
    log = bus.log("broker")
    bus.check("the broker log says why", 'msg="worker refused"' in log and
              'msg="batch refused"' in log)

    for name in ("ticker", "validate", "csv", "spare-sink", "broker"):
        bus.stop(name)
    with open(bus.path("spare.txt")) as f:
        spare_rows = f.read().split()
    bus.check("the spare sink got the one acknowledged batch, once", spare_rows == ["spare-s,100,0"],
              repr(spare_rows))
    bus.check("dcbus-reference runs the same pipeline in process",
              bus.reference(config("reference.yaml", 0, False)) == 0)
    ok, messages = lib.compare_sessions(bus.path("csv"))
    for m in messages:
        bus.check(m, "identical" in m)
    bus.finish()


main()
