"""test_ilp_http_errors.py -- the v2-style endpoint (/api/v2/write, as
InfluxDB 2 and QuestDB serve it) and the server's answers told apart.

The server is this test's own: it checks every request (path, org, bucket,
precision, the token), parses the body strictly (ilp_lines.py) and answers
from a script: 503 twice, then a 400 partial write, then 401, then 204 for
good.  It keeps the points of each request it answered 204 (and, for the
400, pretends it kept none).  The sink must:
  - retry after a 503 and after a 401 (its lines come again; the 401 is
    reported as a critical configuration error);
  - not retry the request refused with 400 (none of its lines come again),
    and report the server's message;
  - in the end have every other tick stored once (a redelivered line is
    the same point: same series, same timestamp).
"""

import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ilp_lines  # noqa: E402
import lib  # noqa: E402

TICKS = 3000
SCRIPT = [503, 503, 400, 401]
requests = []  # (status, points)
bad = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        problems = []
        if url.path != "/api/v2/write":
            problems.append("path " + url.path)
        if q != {"org": ["o"], "bucket": ["b"], "precision": ["ns"]}:
            problems.append("query %s" % q)
        if self.headers.get("Authorization") != "Token s3cret":
            problems.append("authorization %s" % self.headers.get("Authorization"))
        try:
            points = ilp_lines.parse(body) if body else []
        except ValueError as e:
            problems.append(str(e))
            points = []
        with lock:
            bad.extend(problems)
            status = SCRIPT[len(requests)] if len(requests) < len(SCRIPT) and points else 204
            requests.append((status, points))
        msg = b""
        if status == 400:
            msg = b'{"code":"invalid","message":"partial write: field type conflict dropped=7"}'
        elif status != 204:
            msg = b'{"code":"unavailable","message":"try later"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(msg)))
        self.end_headers()
        self.wfile.write(msg)


server = HTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()

bus = lib.Bus()
config = bus.write("c.yaml", bus.config_head() + """
workers:
  ticks: {plugin: ticker, limit: %d, batch: 100, orderbook: false, rate: 6000, linger_ms: 10}
  ilp:   {plugin: ilp, protocol: v2, url: "http://127.0.0.1:%d", org: o, db: b, token: s3cret,
          max_lines: 250, reconnect_min_ms: 50, reconnect_max_ms: 200, sessions: ""}
pipelines:
  p: {from: ticks, to: [ilp]}
""" % (TICKS, server.server_address[1]))

bus.broker(config)
bus.worker("ilp", config)
time.sleep(0.3)
bus.worker("ticks", config)
bus.check("the collector finishes", bus.wait("ticks", 30) == 0)
ok, left = bus.wait_delivered(60)
bus.check("everything delivered", ok, "in flight %s" % left)
bus.check("the ilp worker stops", bus.stop("ilp") == 0)
server.shutdown()

bus.check("every request well formed (endpoint, org, bucket, precision, token, lines)", not bad,
          bad[:3])
statuses = [s for s, pts in requests if pts]
bus.check("the script was played", statuses[:4] == SCRIPT, statuses[:6])


def keys(pts):
    return {(p[1]["symbol"], p[2]["n"], p[3]) for p in pts}


refused = keys(requests[[s for s, _ in requests].index(400)][1])
retried = set()
for s, pts in requests:
    if s in (503, 401):
        retried |= keys(pts)
stored = {}
for s, pts in requests:
    if s == 204:
        for k in keys(pts):
            stored[k] = stored.get(k, 0) + 1
later = [k for k in refused if k in stored]
bus.check("the lines of the 400 were not sent again", refused and not later, later[:3])
bus.check("the lines of the 503s and the 401 came again", retried and retried <= set(stored),
          len(retried - set(stored)))
ns = sorted(k[1] for k in stored) + sorted(k[1] for k in refused)
bus.check("every tick is stored (or was in the refused request)",
          sorted(ns) == list(range(TICKS)), "%d of %d" % (len(set(ns)), TICKS))
log = bus.log("ilp")
bus.check("the 400 is reported with the server's message",
          "HTTP 400" in log and "partial write: field type conflict" in log)
bus.check("the 401 is reported as a configuration error", "HTTP 401" in log and
          "batches wait until the settings or the server are fixed" in log)
bus.check("the 503 is reported as the server being unavailable", "HTTP 503" in log)
bus.finish()
