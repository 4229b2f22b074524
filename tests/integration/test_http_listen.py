"""test_http_listen.py -- records POSTed to http-listen, answered once durable.

A bus: http-listen (bearer token, max_body_mb 1, max_pending 4) -> csv,
and a subscriber to error.*.  Real clients post over loopback.  It checks

  - a JSON-lines body and a msgpack body with the right token: 200 with
    the batch's seq and the record count;
  - idle, the collector's thread sleeps until a request comes (its
    wait_fd): it wakes fewer than 150 times in 2 s, not once a ms;
  - no token, a wrong token: 401; a content type that is neither JSON
    nor msgpack: 415; malformed JSON, bytes that are not UTF-8, bad
    msgpack: 400 with the reason; a body over max_body_mb: 413 -- each
    reported on error.*, nothing of them stored;
  - back-pressure: with the collector paused, the requests past
    max_pending are answered 503 with Retry-After, and those taken are
    answered 200 once it resumes;
  - eight concurrent clients (sending again after a 503): every request
    200, every record once;
  - kill -9 of the collector while six clients post (a client whose
    request fails sends it again as a new request), then a restart:
    every request answered 200 is in the CSV exactly once, whole, and
    a request never answered is there whole or not at all.
"""

import csv
import glob
import http.client
import json
import os
import socket
import sys
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TOKEN = "listen-token"




PORT = lib.free_port()
bus = lib.Bus()
config = bus.write("bus.yaml", bus.config_head() + """workers:
  listen: {plugin: http-listen, port: %d, stream: posted, bearer_token: %s,
           max_body_mb: 1, max_pending: 4, batch_records: 2000}
  csv: {plugin: csv, dir: %s}
pipelines:
  p: {from: listen, to: [csv]}
""" % (PORT, TOKEN, bus.path("csv")))

errors = []
sub = zmq.Context.instance().socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"error.")
bus.broker(config)
sub.connect(bus.topics_ep)
time.sleep(0.3)
bus.worker("csv", config)
bus.worker("listen", config)


def pump():
    while sub.poll(0):
        topic, body = sub.recv_multipart()
        errors.append(msgpack.unpackb(body, raw=False))


def post(body, ctype="application/x-ndjson", token=TOKEN, timeout=30):
    """POSTs body; returns (status, parsed JSON answer, headers), or (None, why, {})."""
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = "Bearer " + token
    return lib.http_post(PORT, "/records", body, headers, timeout)


def post_expecting(body, token=TOKEN):
    """POSTs the headers of body with Expect: 100-continue and reads the answer.

    For a body the server must refuse on its Content-Length alone: the body
    is never sent (sent anyway, the server's close while it still arrives
    can reset the connection before its 413 is read).  A server that asked
    for the body instead would leave this waiting to its time-out, a failure.
    Returns what post() returns."""
    head = ("POST /records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-ndjson\r\nAuthorization: Bearer %s\r\n"
            "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (token, len(body)))
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=30) as sock:
            sock.sendall(head.encode())
            r = http.client.HTTPResponse(sock)
            r.begin()
            return lib.http_answer(r)
    except (OSError, http.client.HTTPException) as e:
        return None, str(e), {}


def lines(tag, n):
    return "".join(json.dumps({"tag": tag, "i": i, "v": i * 1.5}) + "\n" for i in range(n)).encode()


def wait_serving():
    """Until the server answers (a 404 for another path: not reported)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
            c.request("POST", "/probe", body=b"")
            status = c.getresponse().status
            c.close()
        except OSError:
            status = None
        if status == 404:
            return True
        time.sleep(0.1)
    return False


def rows():
    out = []
    for path in glob.glob(bus.path("csv", "*", "posted.csv")):
        with open(path, newline="") as f:
            out += list(csv.DictReader(f))
    return out


if not bus.check("http-listen serves", wait_serving()):
    bus.finish()

# Good bodies.
status, answer, _ = post(lines("one", 5))
bus.check("JSON lines with the token: 200 with seq and records",
          status == 200 and answer.get("records") == 5 and answer.get("seq", 0) > 0, str(answer))
packed = b"".join(msgpack.packb({"tag": "mp", "i": i}) for i in range(3))
status, answer, _ = post(packed, "application/msgpack")
bus.check("msgpack with the token: 200", status == 200 and answer.get("records") == 3, str(answer))



# Idle, the collector sleeps until a request comes (its inbox's eventfd,
# wait_fd): its thread wakes for heartbeats, a few times a second, not
# every millisecond as a 1 ms collect_wait_ms would make it.
before = lib.wakeups(bus.procs["listen"].pid)
time.sleep(2.0)
idle = lib.wakeups(bus.procs["listen"].pid) - before
bus.check("idle, the collector's thread wakes rarely: %d times in 2 s (not every ms)" % idle,
          idle < 150)
status, answer, _ = post(lines("woken", 2))
bus.check("... and a request wakes it at once: 200", status == 200, str(answer))

# Bad requests.
cases = [
    ("no token", lambda: post(lines("bad", 1), token=None), 401),
    ("a wrong token", lambda: post(lines("bad", 1), token="nope"), 401),
    ("text/plain", lambda: post(b"hello", "text/plain"), 415),
    ("malformed JSON", lambda: post(b'{"tag": "bad", "i": 1}\n{"tag": "bad", i: 2}\n'), 400),
    ("not UTF-8", lambda: post(b'{"tag": "bad\xff"}', "application/json"), 400),
    ("bad msgpack", lambda: post(msgpack.packb({"tag": "bad"}) + b"\xc1", "application/msgpack"),
     400),
    ("over max_body_mb", lambda: post_expecting(lines("bad", 30000)), 413),
]
for what, call, want in cases:
    status, answer, headers = call()
    bus.check("%s: %d with a reason" % (what, want),
              status == want and isinstance(answer, dict) and answer.get("error"),
              "%s %s" % (status, answer))
deadline = time.monotonic() + 10
while time.monotonic() < deadline and len(errors) < 7:
    time.sleep(0.1)
    pump()
bus.check("each refusal reported on error.*",
          sorted(e["details"]["status_code"] for e in errors) == [400, 400, 400, 401, 401, 413, 415],
          str([(e["details"]["status_code"], e["message"]) for e in errors]))
bus.check("a malformed body's error says where",
          any("line 2" in e["message"] for e in errors), str([e["message"] for e in errors]))

# Back-pressure.
dcbus = os.path.join(bus.bin, "dcbus")
bus.start("pause", dcbus, "pause", "--config", config, "listen")
bus.wait("pause", 10)
bus.check("the collector is paused", bus.wait_log("listen", "collection paused", 10))
results = []
threads = [threading.Thread(target=lambda k=k: results.append(post(lines("bp%d" % k, 10))))
           for k in range(8)]
for t in threads:
    t.start()
    time.sleep(0.05)
deadline = time.monotonic() + 10
while time.monotonic() < deadline and sum(1 for r in results if r[0] == 503) < 4:
    time.sleep(0.05)
bus.start("resume", dcbus, "resume", "--config", config, "listen")
bus.wait("resume", 10)
for t in threads:
    t.join(30)
statuses = sorted(r[0] or 0 for r in results)
bus.check("paused: the requests past max_pending get 503, the others 200 after the resume",
          statuses == [200] * 4 + [503] * 4, str(statuses))
bus.check("a 503 says Retry-After",
          all(r[2].get("Retry-After") == "1" for r in results if r[0] == 503))

# Concurrent clients.
answered = {}  # request id -> (status, records)
lock = threading.Lock()


def client(k, requests, per):
    for j in range(requests):
        rid = "c%d-%d" % (k, j)
        while True:  # a 503 took nothing: sending again is safe
            status, answer, _ = post(lines(rid, per))
            if status != 503:
                break
            time.sleep(0.05)
        with lock:
            answered[rid] = (status, per)


threads = [threading.Thread(target=client, args=(k, 25, 100)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(120)
bus.check("eight concurrent clients: every request 200",
          len(answered) == 200 and all(s == 200 for s, _ in answered.values()),
          str(sorted(set(s for s, _ in answered.values()), key=str)))

# kill -9 while clients post.
stop = threading.Event()
attempts = {}  # request id -> status (None: no answer)


def poster(k):
    j = 0
    while not stop.is_set():
        rid = "k%d-%d" % (k, j)
        j += 1
        status, _, _ = post(lines(rid, 200), timeout=10)
        with lock:
            attempts[rid] = status
        if status != 200:
            time.sleep(0.05)


threads = [threading.Thread(target=poster, args=(k,)) for k in range(6)]
for t in threads:
    t.start()
deadline = time.monotonic() + 15
while time.monotonic() < deadline and sum(1 for s in list(attempts.values()) if s == 200) < 30:
    time.sleep(0.05)
bus.procs["listen"].kill()
bus.procs["listen"].wait()
time.sleep(0.3)
bus.worker("listen", config)
before = sum(1 for s in list(attempts.values()) if s == 200)
deadline = time.monotonic() + 20
while time.monotonic() < deadline and sum(1 for s in list(attempts.values()) if s == 200) < before + 30:
    time.sleep(0.05)
stop.set()
for t in threads:
    t.join(30)
bus.stop("listen")
ok, left = bus.wait_delivered(30)
bus.check("the broker delivered every batch", ok, "in flight: %s" % left)
bus.stop("csv")

got = {}
for r in rows():
    got.setdefault(r["tag"], []).append(int(r["i"]))
failed = sum(1 for s in attempts.values() if s != 200)
bus.check("requests failed around the kill, and were answered 200 again after the restart",
          failed > 0 and sum(1 for s in attempts.values() if s == 200) >= before + 30,
          "%d failed, %d answered 200" % (failed, sum(1 for s in attempts.values() if s == 200)))

want = {"one": 5, "mp": 3}
want.update({rid: per for rid, (s, per) in answered.items()})
want.update({rid: 200 for rid, s in attempts.items() if s == 200})
missing = [t for t, n in want.items() if sorted(got.get(t, [])) != list(range(n))]
bus.check("every request answered 200 is in the CSV exactly once, whole", not missing,
          "%d requests, wrong: %s" % (len(want), missing[:5]))
unanswered = [rid for rid, s in attempts.items() if s != 200]
partial = [rid for rid in unanswered if rid in got and sorted(got[rid]) != list(range(200))]
bus.check("a request not answered 200 is there whole or not at all", not partial, str(partial[:5]))
bus.check("nothing of a refused request is stored", "bad" not in got)
bp = [t for t in got if t.startswith("bp")]
bus.check("back-pressure: the four taken requests stored once, the refused ones not",
          len(bp) == 4 and all(sorted(got[t]) == list(range(10)) for t in bp), str(bp))

bus.finish()
