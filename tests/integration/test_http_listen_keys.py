"""test_http_listen_keys.py -- a request sent again with the same
Idempotency-Key is stored once, through a 504 and through kills.

A bus: http-listen (ack_timeout_ms 1500) -> csv.  Each body is a few
JSON lines with ids of its own; at the end every body answered 200 is in
the CSV exactly once.

  1. a body, then the same body with the same key: the second answer is
     the first's (same seq) with "replayed": true and the header
     Idempotent-Replayed, and nothing more is stored;
  2. the key with another body: 422; bad keys: 400;
  3. the broker stopped (SIGSTOP): a keyed body is answered 504 (outcome
     unknown), sent again 409 with Retry-After while in flight; once the
     broker goes on, sent again: 200 replayed, stored once;
  4. kill -9 of the collector after a keyed body was stored, and a
     restart: sent again, 200 replayed with the same seq (the journal);
  5. the broker stopped, a keyed body taken and journalled, then the
     collector and the broker killed with -9 (the batch never reached the
     spool): after their restart the body sent again is stored (200, not
     replayed) -- once, not lost.
"""

import csv
import glob
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

PORT = lib.free_port()
bus = lib.Bus()
KEYS = bus.path("keys")
# The workers bear 5 s of broker silence, so the collector goes on taking
# requests while the broker is stopped in 3 (its batch stays in flight).
config = bus.write("bus.yaml", bus.config_head(broker_extra=", heartbeat_timeout_ms: 5000") + """workers:
  listen: {plugin: http-listen, port: %d, stream: posted, ack_timeout_ms: 1500,
           keys_dir: %s}
  csv: {plugin: csv, dir: %s}
pipelines:
  p: {from: listen, to: [csv]}
""" % (PORT, KEYS, bus.path("csv")))


def body(name, n=3):
    return "".join(json.dumps({"id": "%s-%d" % (name, i), "v": i}) + "\n" for i in range(n))


def post(text, key=None, timeout=30):
    """Returns (status, answer, headers), or (None, why, {})."""
    headers = {"Content-Type": "application/x-ndjson"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return lib.http_post(PORT, "/records", text.encode(), headers, timeout)


def rows_of(name):
    """How many times each id of body `name` is in the CSV."""
    counts = {}
    for path in glob.glob(bus.path("csv", "*", "posted.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["id"].startswith(name + "-"):
                    counts[row["id"]] = counts.get(row["id"], 0) + 1
    return counts


def stored_once(label, name, n=3):
    ok, left = bus.wait_delivered(30)
    counts = rows_of(name)
    bus.check("%s: stored exactly once" % label,
              ok and counts == {"%s-%d" % (name, i): 1 for i in range(n)}, (left, counts))


def start_listen():
    """Starts the collector and waits until the broker has taken it (a
    restart in place of a killed one waits for the heartbeat time-out)."""
    joined = 'msg="worker joined" instance=listen'
    before = bus.log("broker").count(joined)
    bus.worker("listen", config)
    bus.check("listen joined", lib.wait_for(lambda: bus.log("broker").count(joined) > before, 30))


def journal_has(key):
    try:
        with open(os.path.join(KEYS, "keys.journal")) as f:
            return any(line.rstrip("\n").endswith(" " + key) for line in f)
    except OSError:
        return False


bus.broker(config)
bus.worker("csv", config)
bus.wait_log("broker", 'msg="worker joined" instance=csv', 20)
start_listen()

# 1. the same body twice
s1, a1, h1 = post(body("a"), key="key-a")
bus.check("1: first answer 200, not a replay", s1 == 200 and "replayed" not in a1, (s1, a1))
s2, a2, h2 = post(body("a"), key="key-a")
bus.check("1: the repeat is answered as the first",
          s2 == 200 and a2.get("seq") == a1.get("seq") and a2.get("records") == 3 and
          a2.get("replayed") is True and h2.get("Idempotent-Replayed") == "true", (s2, a2, h2))
stored_once("1", "a")

# 2. misuse
s, a, _ = post(body("b"), key="key-a")
bus.check("2: the key with another body: 422", s == 422 and "another body" in a.get("error", ""),
          (s, a))
for bad in ("has space", "k" * 129, ""):
    s, a, _ = post(body("b"), key=bad)
    bus.check("2: key %r refused with 400" % bad[:12], s == 400 and "Idempotency-Key" in
              a.get("error", ""), (s, a))
bus.check("2: nothing of them stored", rows_of("b") == {})

# 3. a 504, then the repeats
broker_pid = bus.procs["broker"].pid
os.kill(broker_pid, signal.SIGSTOP)
s, a, _ = post(body("c"), key="key-c")
bus.check("3: broker stopped: 504", s == 504, (s, a))
s, a, h = post(body("c"), key="key-c")
bus.check("3: sent again while in flight: 409 with Retry-After",
          s == 409 and "Retry-After" in h, (s, a, h))
os.kill(broker_pid, signal.SIGCONT)
answers = []


def replayed():
    answers.append(post(body("c"), key="key-c"))
    return answers[-1][0] == 200


bus.check("3: once stored, the repeat is 200 replayed",
          lib.wait_for(replayed, 30, 0.5) and answers[-1][1].get("replayed") is True,
          answers[-3:])
stored_once("3", "c")

# 4. kill -9 of the collector after a keyed body was stored
s, a4, _ = post(body("d"), key="key-d")
bus.check("4: stored", s == 200, (s, a4))
bus.procs["listen"].send_signal(signal.SIGKILL)
bus.procs["listen"].wait()
os.rename(bus.path("listen.log"), bus.path("listen.1.log"))
start_listen()
s, a, h = post(body("d"), key="key-d")
bus.check("4: after the restart the repeat is the first's answer",
          s == 200 and a.get("replayed") is True and a.get("seq") == a4.get("seq"), (s, a, a4))
stored_once("4", "d")

# 5. journalled, never spooled: the broker and the collector killed
os.kill(bus.procs["broker"].pid, signal.SIGSTOP)
first = []
t = threading.Thread(target=lambda: first.append(post(body("e"), key="key-e", timeout=10)))
t.start()
bus.check("5: the key is journalled", lib.wait_for(lambda: journal_has("key-e"), 20))
bus.procs["listen"].send_signal(signal.SIGKILL)
bus.procs["listen"].wait()
bus.procs["broker"].send_signal(signal.SIGKILL)  # stopped: it never read the batch
bus.procs["broker"].wait()
t.join()
bus.check("5: the first request got no 200", not first or first[0][0] != 200, first)
os.rename(bus.path("listen.log"), bus.path("listen.2.log"))
os.rename(bus.path("broker.log"), bus.path("broker.1.log"))
bus.broker(config)
start_listen()
s, a, _ = post(body("e"), key="key-e")
bus.check("5: sent again, it is stored anew (not a replay)",
          s == 200 and "replayed" not in a, (s, a))
bus.check("5: the collector said it forgot the key",
          "forgotten=1" in bus.log("listen"), bus.log("listen")[-400:])
stored_once("5", "e")
for name in "acd":
    stored_once("still", name)

bus.finish()
