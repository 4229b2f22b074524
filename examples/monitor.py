#!/usr/bin/python3
"""monitor.py -- a dcbus monitoring client in Python, from docs/protocol.md.

Subscribes to the broker's topics and prints one line per message; on
start it also asks the broker (a REQUEST on the bus endpoint) for the
tasks already running.  Only ZeroMQ and msgpack are needed (Debian:
python3-zmq, python3-msgpack).

    examples/monitor.py [--topics EP] [--bus EP] [--count N] [--timeout S]
                        [--client-cert FILE --server-cert FILE] [PREFIX ...]

PREFIX selects topics by prefix (default: event. error. task. session.).
With a broker that has security.curve on, give the config's client_cert
and server_cert (the files `dcbus keygen` writes).
"""

import argparse
import sys
import time

import msgpack
import zmq
import zmq.auth


def secure(sock, opts):
    """CURVE, when asked: this client's key pair and the broker's public key."""
    if opts.client_cert:
        sock.curve_publickey, sock.curve_secretkey = \
            zmq.auth.load_certificate(opts.client_cert + "_secret")
        sock.curve_serverkey = zmq.auth.load_certificate(opts.server_cert)[0]


def ask(ctx, opts, op, timeout_ms=2000, **args):
    """One REQUEST on the bus endpoint; returns the result map, or None."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    secure(sock, opts)
    sock.connect(opts.bus)
    try:
        request = dict(args, id=1, op=op)
        sock.send_multipart([b"DCB1", b"REQUEST", msgpack.packb(request)])
        while sock.poll(timeout_ms):
            signature, command, body = sock.recv_multipart()
            reply = msgpack.unpackb(body, raw=False)
            if command == b"REPLY" and reply.get("id") == 1:
                return reply["result"] if reply["ok"] else None
        return None
    finally:
        sock.close()


def bar(progress, width=20):
    done = int(progress * width)
    return "[%s%s] %3d%%" % ("#" * done, "." * (width - done), progress * 100)


def summary(topic, m):
    """A short text for one message, by the family of its topic."""
    family = topic.split(".", 1)[0]
    if family == "event":
        return "%s %s" % (m["source"], m.get("data") or "")
    if family == "error":
        where = " %s/%s" % (m["stream"], m["seq"]) if "stream" in m else ""
        return "%s: %s%s %s" % (m["layer_name"], m["message"], where, m.get("details") or "")
    if family == "task":
        return "%s %s %s records=%d%s" % (m["type"], m["name"], bar(m["progress"]),
                                          m["records"], " error=" + m["error"] if m["error"] else "")
    if family == "session":
        return "%s %s records=%d meta=%s" % (m["id"], m["status"], m["records"], m["meta"])
    if family == "metrics":
        return "up %.0f s, %d batches in flight" % (m["uptime_s"], m["batches_in_flight"])
    return str(m)[:200]


def main():
    parser = argparse.ArgumentParser(description="Follow a dcbus broker's topics.")
    parser.add_argument("--topics", default="ipc://run/topics", help="the XPUB endpoint")
    parser.add_argument("--bus", default="ipc://run/bus", help="the bus endpoint, for requests")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages")
    parser.add_argument("--timeout", type=float, default=0, help="stop after S seconds")
    parser.add_argument("--client-cert", help="this client's certificate (CURVE)")
    parser.add_argument("--server-cert", help="the broker's public certificate (CURVE)")
    parser.add_argument("prefixes", nargs="*", default=["event.", "error.", "task.", "session."])
    opts = parser.parse_args()
    if bool(opts.client_cert) != bool(opts.server_cert):
        parser.error("--client-cert and --server-cert go together")

    ctx = zmq.Context()
    tasks = ask(ctx, opts, "tasks")
    if tasks is None:
        print("no broker answers at %s" % opts.bus, file=sys.stderr)
    else:
        running = [t for t in tasks["tasks"] if t["status"] in ("PENDING", "RUNNING")]
        print("%d tasks known, %d running" % (len(tasks["tasks"]), len(running)))

    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    secure(sub, opts)
    for prefix in opts.prefixes:
        sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    sub.connect(opts.topics)

    seen, deadline = 0, time.monotonic() + opts.timeout if opts.timeout else None
    try:
        while not opts.count or seen < opts.count:
            wait_ms = 500 if deadline is None else (deadline - time.monotonic()) * 1000
            if wait_ms <= 0:
                break
            if not sub.poll(min(wait_ms, 500)):
                continue
            frames = sub.recv_multipart()
            if len(frames) != 2:
                continue  # not a topic message: two frames, topic and body
            topic, body = frames[0].decode(), msgpack.unpackb(frames[1], raw=False)
            print("%s %s %s" % (time.strftime("%H:%M:%S"), topic, summary(topic, body)),
                  flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
