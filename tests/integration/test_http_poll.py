"""test_http_poll.py -- the http collector against a real HTTP server.

The test starts Python's http.server on loopback with one path per case,
then a bus: one http instance per case, each on its own stream into csv,
and a subscriber to error.*.  It checks that

  - a bearer token from ${ENV} is accepted (records) and a wrong one is
    refused: a CONNECTION error on error.* with status_code 401, and no
    retry of a 4xx (the server saw exactly one request); a 403 the same,
    and a 404 one request however many retries are allowed;
  - a refused connection (a port nothing listens on) is retried: a
    CONNECTION error once its 3 attempts are spent;
  - a 500, a 500, then success: the records arrive once, and the
    server's request times show the back-off (each gap at least the
    jitter's floor: half of backoff_ms doubled per retry);
  - a server that never answers: a CONNECTION error saying it timed out;
  - an ETag, and a Last-Modified, answered 304 after the first poll: their
    records once, however many polls (and the server saw If-None-Match,
    If-Modified-Since);
  - a 10 MB JSON array: every one of its records, once;
  - format auto and a body that is not JSON: one record of its bytes;
  - bad input -- malformed JSON, text/html, bytes that are not UTF-8, a
    body over max_body_mb -- a VALIDATION error each, naming the URL,
    while the same instance's good URL is still taken;
  - kill -9 of a collector polling an unchanged resource (no validators)
    and its restart: its records are still there once (the restarted
    collector resumes from the body's fingerprint and takes nothing).
"""

import csv
import glob
import http.server
import json
import os
import socket
import socketserver
import sys
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

BIG_RECORDS = 100000
TOKEN = "s3cret-token"
BACKOFF_MS = 300

big_body = json.dumps([{"id": i, "kind": "big", "value": i * 0.5, "label": "x" * 60}
                       for i in range(BIG_RECORDS)]).encode()
assert len(big_body) >= 10 * 1000 * 1000, len(big_body)

seen = {}  # path -> [(monotonic time, headers)]
seen_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with seen_lock:
            hits = seen.setdefault(self.path, [])
            hits.append((time.monotonic(), dict(self.headers)))
            n = len(hits)
        p = self.path
        if p == "/auth":
            if self.headers.get("Authorization") == "Bearer " + TOKEN:
                self.reply(200, b'[{"id": 1, "kind": "auth"}, {"id": 2, "kind": "auth"}]')
            else:
                self.reply(401, b'{"error": "bad token"}')
        elif p == "/forbidden":
            self.reply(403, b'{"error": "not yours"}')
        elif p == "/missing":
            self.reply(404, b'{"error": "no such thing"}')
        elif p == "/flaky":
            if n <= 2:
                self.reply(500, b"oops", "text/plain")
            else:
                self.reply(200, b'{"id": 7, "kind": "flaky"}\n{"id": 8, "kind": "flaky"}\n',
                           "application/x-ndjson")
        elif p == "/hang":
            time.sleep(20)
        elif p == "/etag":
            if self.headers.get("If-None-Match") == '"v1"':
                self.reply(304, extra=[("ETag", '"v1"')])
            else:
                self.reply(200, b'[{"id": 1, "kind": "etag"}, {"id": 2, "kind": "etag"}]',
                           extra=[("ETag", '"v1"')])
        elif p == "/lm":
            stamp = "Wed, 02 Dec 2026 10:00:00 GMT"
            if self.headers.get("If-Modified-Since") == stamp:
                self.reply(304, extra=[("Last-Modified", stamp)])
            else:
                self.reply(200, b'{"id": 1, "kind": "lm"}', extra=[("Last-Modified", stamp)])
        elif p == "/plain":
            self.reply(200, b'{"id": 1, "kind": "plain"}')
        elif p == "/big":
            self.reply(200, big_body)
        elif p == "/good":
            self.reply(200, b'{"id": 1, "kind": "good"}')
        elif p == "/malformed":
            self.reply(200, b'[{"id": 1}, {"id": 2,, }]')
        elif p == "/html":
            self.reply(200, b"<html>hello</html>", "text/html")
        elif p == "/latin1":
            self.reply(200, b'{"name": "caf\xe9"}')
        elif p == "/huge":
            self.reply(200, b"[" + b'{"id": 1},' * 200000 + b'{"id": 2}]')
        else:
            self.reply(404, b"{}")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up (the time-out case) is expected


server = Server(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = "http://127.0.0.1:%d" % server.server_address[1]
os.environ["HTTP_TEST_TOKEN"] = TOKEN


def closed_port():
    """A loopback port nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


closed_base = "http://127.0.0.1:%d" % closed_port()

bus = lib.Bus()
config = bus.write("bus.yaml", bus.config_head() + """workers:
  auth_ok:  {plugin: http, urls: [%(b)s/auth], stream: auth_ok, polls: 1,
             bearer_token: "${HTTP_TEST_TOKEN}"}
  auth_bad: {plugin: http, urls: [%(b)s/auth], stream: auth_bad, polls: 1,
             bearer_token: wrong, retries: 3, backoff_ms: 50}
  forbid:   {plugin: http, urls: [%(b)s/forbidden], stream: forbid, polls: 1, retries: 3,
             backoff_ms: 50}
  missing:  {plugin: http, urls: [%(b)s/missing], stream: missing, polls: 1, retries: 3,
             backoff_ms: 50}
  refused:  {plugin: http, urls: [%(closed)s/refused], stream: refused, polls: 1, retries: 2,
             backoff_ms: 50, connect_timeout_ms: 1000}
  flaky:    {plugin: http, urls: [%(b)s/flaky], stream: flaky, polls: 1, retries: 3,
             backoff_ms: %(backoff)d}
  hang:     {plugin: http, urls: [%(b)s/hang], stream: hang, polls: 1, retries: 0,
             timeout_ms: 500}
  etag:     {plugin: http, urls: [%(b)s/etag, %(b)s/lm], stream: etag, polls: 4,
             interval_ms: 100}
  big:      {plugin: http, urls: [%(b)s/big], stream: big, polls: 1}
  bad:      {plugin: http, stream: bad, polls: 1, max_body_mb: 1,
             urls: [%(b)s/malformed, %(b)s/html, %(b)s/latin1, %(b)s/huge, %(b)s/good]}
  raw:      {plugin: http, urls: [%(b)s/html], stream: raw, polls: 1, format: auto}
  plain:    {plugin: http, urls: [%(b)s/plain], stream: plain, interval_ms: 100,
             headers: {X-Test: plain}}
  csv: {plugin: csv, dir: %(csv)s}
pipelines:
  p_auth_ok:  {from: auth_ok, to: [csv]}
  p_auth_bad: {from: auth_bad, to: [csv]}
  p_forbid:   {from: forbid, to: [csv]}
  p_missing:  {from: missing, to: [csv]}
  p_refused:  {from: refused, to: [csv]}
  p_flaky:    {from: flaky, to: [csv]}
  p_hang:     {from: hang, to: [csv]}
  p_etag:     {from: etag, to: [csv]}
  p_big:      {from: big, to: [csv]}
  p_bad:      {from: bad, to: [csv]}
  p_raw:      {from: raw, to: [csv]}
  p_plain:    {from: plain, to: [csv]}
""" % {"b": base, "csv": bus.path("csv"), "backoff": BACKOFF_MS, "closed": closed_base})

errors = []
sub = zmq.Context.instance().socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"error.")
bus.broker(config)
sub.connect(bus.topics_ep)
time.sleep(0.3)
ONCE = ("auth_ok", "auth_bad", "forbid", "missing", "refused", "flaky", "hang", "etag", "big", "bad", "raw")
for name in ("csv",) + ONCE + ("plain",):
    bus.worker(name, config)


def pump(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.poll(50):
            topic, body = sub.recv_multipart()
            errors.append((topic.decode(), msgpack.unpackb(body, raw=False)))


def wait_for(cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pump(0.1)
        if cond():
            return True
    return False


def rows(stream):
    out = []
    for path in glob.glob(bus.path("csv", "*", stream + ".csv")):
        with open(path, newline="") as f:
            out += list(csv.DictReader(f))
    return out


def hits(path):
    with seen_lock:
        return list(seen.get(path, []))


wait_for(lambda: all(bus.wait(n, 0) is not None for n in ONCE), 40)
for name in ONCE:
    bus.check("%s ran its polls and ended" % name, bus.wait(name, 0) == 0, str(bus.wait(name, 0)))
wait_for(lambda: len(hits("/plain")) >= 3, 10)

# kill -9 of the collector polling /plain, then a restart that polls on.
before = len(hits("/plain"))
bus.procs["plain"].kill()
bus.procs["plain"].wait()
bus.worker("plain", config)
bus.check("the restarted plain collector polls again",
          wait_for(lambda: len(hits("/plain")) >= before + 3, 15))
bus.stop("plain")
ok, left = bus.wait_delivered(30)
bus.check("the broker delivered every batch", ok, "in flight: %s" % left)
pump(0.5)


def errors_for(path):
    return [m for _, m in errors if (m.get("details") or {}).get("url") == base + path]


# Bearer token.
bus.check("a right bearer token: the records", len(rows("auth_ok")) == 2, str(rows("auth_ok")))
bad = errors_for("/auth")
bus.check("a wrong bearer token: a CONNECTION error with status 401 on error.*",
          any(m["error_type"] == "CONNECTION" and m["details"]["status_code"] == 401 for m in bad),
          str(bad[:1]))
bus.check("a 401 is not retried", len(hits("/auth")) == 2, "%d requests" % len(hits("/auth")))
bus.check("a wrong bearer token: no records", rows("auth_bad") == [])

# 403 and other 4xx: not retried; a refused connection: retried.
forbid = errors_for("/forbidden")
bus.check("a 403: a CONNECTION error with status 403 on error.*",
          any(m["error_type"] == "CONNECTION" and m["details"]["status_code"] == 403
              for m in forbid), str(forbid[:1]))
bus.check("a 403 is not retried (retries: 3)", len(hits("/forbidden")) == 1,
          "%d requests" % len(hits("/forbidden")))
missing = errors_for("/missing")
bus.check("a 404: an error with status 404, one request (retries: 3)",
          len(hits("/missing")) == 1 and any(m["details"]["status_code"] == 404 for m in missing),
          "%d requests, %s" % (len(hits("/missing")), missing[:1]))
refused = [m for _, m in errors if (m.get("details") or {}).get("url") == closed_base + "/refused"]
bus.check("a refused connection: retried, then a CONNECTION error after 3 attempts",
          any(m["error_type"] == "CONNECTION" and m["details"]["attempts"] == 3 for m in refused),
          str(refused[:1]))
bus.check("4xx and refused connections: no records",
          rows("forbid") == [] and rows("missing") == [] and rows("refused") == [])

# 500, 500, success.
flaky = hits("/flaky")
gaps = [b[0] - a[0] for a, b in zip(flaky, flaky[1:])]
floors = [BACKOFF_MS / 2000.0, BACKOFF_MS / 1000.0]
bus.check("500 then success: three requests", len(flaky) == 3, "%d" % len(flaky))
bus.check("the back-off grows: gaps at least %s s" % floors,
          len(gaps) == 2 and all(g >= f for g, f in zip(gaps, floors)), str(gaps))
bus.check("500 then success: the records once", sorted(r["id"] for r in rows("flaky")) == ["7", "8"],
          str(rows("flaky")))

# Time-out.
hang = errors_for("/hang")
bus.check("a server that never answers: a time-out on error.*",
          any(m["error_type"] == "CONNECTION" and "timed out" in m["message"].lower() for m in hang),
          str(hang[:1]))

# ETag.
etag = hits("/etag")
bus.check("ETag: four polls", len(etag) == 4, str(len(etag)))
bus.check("ETag: If-None-Match sent after the first",
          all(h.get("If-None-Match") == '"v1"' for _, h in etag[1:]))
lm = hits("/lm")
bus.check("Last-Modified: If-Modified-Since sent after the first",
          len(lm) == 4 and all(h.get("If-Modified-Since") for _, h in lm[1:]), str(len(lm)))
bus.check("ETag and Last-Modified unchanged: the records once",
          sorted((r["kind"], r["id"]) for r in rows("etag"))
          == [("etag", "1"), ("etag", "2"), ("lm", "1")], str(len(rows("etag"))))

# 10 MB.
big = rows("big")
bus.check("a 10 MB JSON array: every record once",
          sorted(int(r["id"]) for r in big) == list(range(BIG_RECORDS)), "%d rows" % len(big))
meta = json.loads(big[0]["collected"]) if big else {}
bus.check("records carry the CollectedData metadata",
          meta.get("collection_method") == "http_get" and meta.get("url") == base + "/big"
          and meta.get("status_code") == 200 and meta.get("content_type") == "application/json"
          and meta.get("source_id") == "big" and meta.get("data_format") == "json"
          and meta.get("timestamp", 0) > 0, str(meta))

# Bad input.
for path, words in (("/malformed", "malformed json"), ("/html", "not json"),
                    ("/latin1", "not utf-8"), ("/huge", "max_body_mb")):
    e = errors_for(path)
    bus.check("%s: a VALIDATION error naming the URL" % path,
              any(m["error_type"] == "VALIDATION" and words in m["message"].lower()
                  and base + path in m["message"] for m in e), str(e[:1]))
bus.check("bad input: the good URL of the same source is still taken",
          [r["kind"] for r in rows("bad")] == ["good"], str(rows("bad")))

# Raw bytes.
raw = rows("raw")
bus.check("format auto, text/html: one record of the raw bytes",
          len(raw) == 1 and raw[0]["raw_data"] == "<html>hello</html>"
          and json.loads(raw[0]["collected"]).get("data_format") == "raw", str(raw))

# Resume after kill -9.
bus.check("kill -9 and restart: the unchanged resource's records once",
          [r["kind"] for r in rows("plain")] == ["plain"], str(rows("plain")))
bus.check("the headers setting is sent", all(h.get("X-Test") == "plain" for _, h in hits("/plain")))

server.shutdown()
bus.finish()
