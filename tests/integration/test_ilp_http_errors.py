"""test_ilp_http_errors.py -- the v2-style endpoint (/api/v2/write, as
InfluxDB 2 and QuestDB serve it) and the server's answers told apart.

The server is this test's own: it checks every request (path, org, bucket,
precision, the token) and parses the body strictly (ilp_lines.py).  It
answers the first two requests 503 and the fifth 401 (keeping nothing),
and any request holding the tick n = 1234 with a 400 partial write, as
InfluxDB does for a line it refuses: it keeps every other line of it.
The sink must:
  - retry after a 503 and after a 401 (their lines come again; the 401 is
    reported as a critical configuration error);
  - not retry the refused line for ever: report the server's message and
    go on (it may come again only when a flush that held it is handed back
    for another failure: at most once per 503/401 here);
  - in the end have every other tick stored (a redelivered line is the
    same point: same series, same timestamp).
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
SCRIPT = {0: 503, 1: 503, 4: 401}
REFUSED_N = 1234
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
            status = SCRIPT.get(len(requests), 204) if points else 204
            if status == 204 and any(p[2].get("n") == REFUSED_N for p in points):
                status = 400
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
bus.check("the script was played", statuses[:2] == [503, 503] and statuses[4] == 401 and
          400 in statuses, statuses[:8])


def keys(pts):
    return {(p[1]["symbol"], p[2]["n"], p[3]) for p in pts}


retried = set()
for s, pts in requests:
    if s in (503, 401):
        retried |= keys(pts)
stored = set()
for s, pts in requests:
    if s in (204, 400):  # a 400 keeps every line but the refused one
        stored |= {k for k in keys(pts) if k[1] != REFUSED_N}
sent_refused = sum(1 for s, pts in requests if any(p[2]["n"] == REFUSED_N for p in pts))
failures = sum(1 for s in statuses if s in (503, 401))
bus.check("the refused line is not retried for ever", 1 <= sent_refused <= 1 + failures,
          "sent %d times, %d failed requests" % (sent_refused, failures))
bus.check("the lines of the 503s and the 401 came again", retried and
          {k for k in retried if k[1] != REFUSED_N} <= stored, len(retried - stored))
ns = sorted(k[1] for k in stored)
bus.check("every other tick is stored, once as a point",
          ns == [n for n in range(TICKS) if n != REFUSED_N], "%d of %d" % (len(ns), TICKS - 1))
log = bus.log("ilp")
bus.check("the 400 is reported with the server's message",
          "HTTP 400" in log and "partial write: field type conflict" in log)
bus.check("the 401 is reported as a configuration error", "HTTP 401" in log and
          "batches wait until the settings or the server are fixed" in log)
bus.check("the 503 is reported as the server being unavailable", "HTTP 503" in log)
bus.finish()
