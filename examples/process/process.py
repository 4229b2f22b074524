#!/usr/bin/python3
"""process.py -- a process controller that logs a coating run into dcbus.

Plays seed 000's Process API against a running bus (config/spray.yaml):

  1. start_run(): asks the broker for a session of type `run` whose
     metadata carries the sequence id, the operator, the recipe and its
     parameters (a REQUEST `session_start` on the bus endpoint,
     docs/protocol.md) -- the runs sink writes the run file;
  2. save_spray_event() / update_spray_event(): posts spray events, then
     updates of some of them, to the `http-listen` collector as JSON lines
     (a 200 means the broker has them on disk); each event has its
     `event_id`, and `op: update` marks an update;
  3. listens meanwhile to the `event.*` and `session.*` topics (the
     broker's XPUB endpoint) and prints each notification;
  4. end_run(): ends the session (completed, or failed), waits for the
     broker's `session.end.run` notification of this run, and prints a
     summary.

Only Python's standard library, ZeroMQ and msgpack (Debian: python3-zmq,
python3-msgpack).

    examples/process/process.py [--bus EP] [--topics EP] [--url URL]
        [--token TOKEN] [--sequence ID] [--operator NAME] [--events N]
        [--update-every K] [--fail] [--quiet]

Exit status 0 once the broker has ended the run; 1 when a request is
refused or the notification does not come.
"""

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request

import msgpack
import zmq

SIGNATURE = b"DCB1"
PRINT_LOCK = threading.Lock()


def say(line):
    """Prints one whole line: the listener thread prints too, and print()
    writes a line's text and its newline separately, so two threads'
    lines could otherwise run into each other."""
    with PRINT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Bus:
    """The two ends of the broker a client needs: REQUESTs and topics."""

    def __init__(self, bus_ep, topics_ep, prefixes, quiet=False):
        self.ctx = zmq.Context.instance()
        self.bus_ep = bus_ep
        self.seen = []  # (topic, message) of every notification
        self.lock = threading.Condition()
        self.quiet = quiet
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        for p in prefixes:
            self.sub.setsockopt(zmq.SUBSCRIBE, p.encode())
        self.sub.connect(topics_ep)
        self.running = True
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def request(self, op, timeout_s=5.0, **args):
        """One REQUEST; returns the result, or raises RuntimeError."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.bus_ep)
        try:
            sock.send_multipart([SIGNATURE, b"REQUEST", msgpack.packb(dict(args, id=1, op=op))])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if not sock.poll(100):
                    continue
                frames = sock.recv_multipart()
                if len(frames) != 3 or frames[1] != b"REPLY":
                    continue
                reply = msgpack.unpackb(frames[2], raw=False)
                if not reply.get("ok"):
                    raise RuntimeError("%s refused: %s" % (op, reply.get("error")))
                return reply.get("result")
            raise RuntimeError("no answer to %s from %s" % (op, self.bus_ep))
        finally:
            sock.close()

    def _listen(self):
        while self.running:
            if not self.sub.poll(100):
                continue
            frames = self.sub.recv_multipart()
            if len(frames) != 2:
                continue
            topic = frames[0].decode("utf-8", "replace")
            message = msgpack.unpackb(frames[1], raw=False)
            if not self.quiet:
                say("notified: %s %s" % (topic, describe(message)))
            with self.lock:
                self.seen.append((topic, message))
                self.lock.notify_all()

    def wait_for(self, match, timeout_s):
        """Waits for a notification for which match(topic, message) holds."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                for topic, message in self.seen:
                    if match(topic, message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)

    def close(self):
        self.running = False
        self.thread.join()
        self.sub.close()


def describe(message):
    keys = ("id", "type", "status", "source", "stream", "records", "message")
    return " ".join("%s=%s" % (k, message[k]) for k in keys if k in message)


class ProcessAPI:
    """Seed 000's process side: runs of a sequence and their spray events."""

    def __init__(self, bus, url, token=None, chunk=100):
        self.bus, self.url, self.token, self.chunk = bus, url, token, chunk
        self.pending = []
        self.run_id = None
        self.posted = 0

    def start_run(self, sequence_id, **meta):
        result = self.bus.request("session_start", type="run",
                                  meta=dict(meta, sequence_id=sequence_id))
        self.run_id = result["id"]
        return self.run_id

    def save_spray_event(self, event):
        self._queue(dict(event, op="save"))

    def update_spray_event(self, event):
        self._queue(dict(event, op="update"))

    def _queue(self, event):
        self.pending.append(event)
        if len(self.pending) >= self.chunk:
            self.flush()

    def flush(self):
        """Posts the queued events, one request; again after a 503."""
        if not self.pending:
            return
        body = "".join(json.dumps(e) + "\n" for e in self.pending).encode()
        headers = {"Content-Type": "application/x-ndjson"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        for attempt in range(50):
            try:
                with urllib.request.urlopen(urllib.request.Request(
                        self.url, data=body, headers=headers), timeout=30) as answer:
                    json.load(answer)
                break
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    raise RuntimeError("POST %s: %d %s" % (self.url, e.code, e.read().decode()))
                time.sleep(float(e.headers.get("Retry-After", "1")))
        else:
            raise RuntimeError("POST %s: still busy" % self.url)
        self.posted += len(self.pending)
        self.pending = []

    def end_run(self, status="completed"):
        self.flush()
        self.bus.request("session_end", status=status)


def spray_event(run_id, sequence_id, i, version=0):
    return {"event_id": "%s/%d" % (run_id, i), "sequence_id": sequence_id,
            "event_type": ("spray", "move", "pause")[i % 3], "nozzle": i % 4,
            "pressure": round(2.0 + 0.1 * (i % 10) + 0.5 * version, 3),
            "thickness_um": None if version == 0 else round(10 + (i % 7) * 0.25, 2),
            "version": version}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bus", default="ipc://run/bus", help="the broker's bus endpoint")
    ap.add_argument("--topics", default="ipc://run/topics", help="its topics endpoint")
    ap.add_argument("--url", default="http://127.0.0.1:8080/records", help="http-listen")
    ap.add_argument("--token", help="http-listen's bearer_token, if it has one")
    ap.add_argument("--sequence", default="S1", help="the sequence the run executes")
    ap.add_argument("--operator", default="operator")
    ap.add_argument("--events", type=int, default=300, help="spray events to save")
    ap.add_argument("--update-every", type=int, default=5,
                    help="update every K-th event after saving all (0: none)")
    ap.add_argument("--fail", action="store_true", help="end the run as failed")
    ap.add_argument("--quiet", action="store_true", help="no line per notification")
    opts = ap.parse_args(argv)

    bus = Bus(opts.bus, opts.topics, ["event.", "session."], opts.quiet)
    # The broker answers a new subscription with the session going on: once
    # that has come, the subscription is in place and no notice is missed.
    if bus.wait_for(lambda t, m: t.startswith("session."), 10.0) is None:
        bus.close()
        sys.exit("process: no session notice from %s in 10 s" % opts.topics)
    api = ProcessAPI(bus, opts.url, opts.token)
    try:
        run_id = api.start_run(opts.sequence, operator=opts.operator, recipe="coat-A",
                               parameters={"speed_mm_s": 12.5, "passes": 3})
        say("run %s started for sequence %s" % (run_id, opts.sequence))
        for i in range(opts.events):
            api.save_spray_event(spray_event(run_id, opts.sequence, i))
        updates = 0
        for i in range(0, opts.events, opts.update_every) if opts.update_every else ():
            api.update_spray_event(spray_event(run_id, opts.sequence, i, version=1))
            updates += 1
        api.end_run("failed" if opts.fail else "completed")
        ended = bus.wait_for(lambda t, m: t.startswith("session.end.") and m.get("id") == run_id,
                             10)
        if not ended:
            print("no session.end notification for %s" % run_id, file=sys.stderr)
            return 1
        say("run %s ended %s: %d events saved, %d updated, %d posted" %
            (run_id, ended.get("status"), opts.events, updates, api.posted))
        return 0
    except (RuntimeError, OSError) as e:
        print("process: %s" % e, file=sys.stderr)
        return 1
    finally:
        bus.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
