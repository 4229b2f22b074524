"""test_large_frames.py -- a message larger than broker.max_message_mb costs
the broker nothing.

Without a limit, libzmq allocates whatever size a message announces, so any
client that can reach an endpoint can make the broker hold gigabytes.  With
broker.max_message_mb set (here 4), every socket the broker binds drops a
connection that announces a larger message before the memory is taken.

A client sends three 64 MB DATA messages to the bus endpoint and one 64 MB
frame to the topics endpoint, each on its own connection, and waits until
the broker has either dropped that connection (the client sees it
closed) or answered it (the broker read it all); the client speaks ZMTP
itself, so it sees exactly what the broker did with the connection.  Then the checks:
every connection was dropped, none answered; the broker's peak resident
memory (VmHWM in /proc/PID/status) grew by less than one such message; it
still answers stats; and a mock-source -> mock-storage pipeline started
after it delivers all its records, once each.
"""

import os
import sys
import time

import socket
import struct

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

LIMIT_MB = 4
FRAME_MB = 64
RECORDS = 20000

bus = lib.Bus()


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM for pid %d" % pid)


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def zmtp_frame(body, more=False, command=False):
    """One ZMTP 3 frame: flags, size (1 byte, or 8 for a long frame), body."""
    flags = (1 if more else 0) | (4 if command else 0)
    if len(body) > 255:
        return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def send_big(endpoint, socket_type, frames):
    """Speaks ZMTP 3 itself over the ipc endpoint (so what the broker does
    with the connection is seen exactly): the greeting, READY as a
    `socket_type`, then `frames`.  Returns "dropped" once the broker closed
    the connection, "answered" if it sent anything after its READY, or
    "nothing" after 60 s."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(endpoint[len("ipc://"):])
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + \
        b"\x00" + b"\x00" * 31
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    try:
        s.sendall(greeting + zmtp_frame(ready, command=True))
        recv_exactly(s, 64)  # the broker's greeting
        flags, size = recv_exactly(s, 2)
        recv_exactly(s, size if not flags & 2 else struct.unpack(">Q", bytes([size]) +
                                                                 recv_exactly(s, 7))[0])
        for i, body in enumerate(frames):
            s.sendall(zmtp_frame(body, more=i < len(frames) - 1))
        return "answered" if s.recv(1) else "dropped"
    except (ConnectionError, BrokenPipeError):
        return "dropped"
    except socket.timeout:
        return "nothing"
    finally:
        s.close()


def main():
    cfg = bus.write("bus.yaml", bus.config_head(broker_extra=", max_message_mb: %d" % LIMIT_MB)
                    + """workers:
  src: {plugin: mock-source, records: %d, batch: 100}
  sink: {plugin: mock-storage, file: %s}
pipelines:
  p: {from: src, to: [sink]}
""" % (RECORDS, bus.path("sink.txt")))
    broker = bus.broker(cfg)
    bus.worker("sink", cfg)
    bus.check("the sink registers", bus.wait_log("broker", 'msg="worker joined" instance=sink ',
                                                 10))
    before = vm_hwm_kb(broker.pid)

    big = os.urandom(1024) * (FRAME_MB * 1024)
    outcomes = []
    for _ in range(3):
        outcomes.append(send_big(bus.bus_ep, b"DEALER", [b"DCB1", b"DATA", big]))
    outcomes.append(send_big(bus.topics_ep, b"XSUB", [b"\x01" + big]))
    bus.check("each %d MB message's connection is dropped (limit %d MB), none answered"
              % (FRAME_MB, LIMIT_MB), outcomes == ["dropped"] * 4, repr(outcomes))

    try:
        result = lib.stats(bus.bus_ep, 10)
    except TimeoutError:
        result = None
    bus.check("the broker is up and answers stats", result is not None and broker.poll() is None)
    grown = vm_hwm_kb(broker.pid) - before
    bus.check("the broker's peak memory grew by less than one message (%d MB)" % FRAME_MB,
              grown < FRAME_MB * 1024 // 2, "VmHWM +%d kB" % grown)

    bus.worker("src", cfg)
    status = bus.wait("src", 60)
    bus.check("a collector started after them ends with exit 0", status == 0, str(status))
    delivered, in_flight = bus.wait_delivered(60)
    bus.check("the broker delivers every batch", delivered, "in flight %s" % in_flight)
    bus.stop("sink")
    with open(bus.path("sink.txt")) as f:
        ns = [line.rsplit(",", 1)[1] for line in f.read().split()]
    bus.check("the sink has records 0..%d once each, in order" % (RECORDS - 1),
              ns == [str(n) for n in range(RECORDS)], "%d lines" % len(ns))
    bus.stop("broker")
    bus.finish()


main()
