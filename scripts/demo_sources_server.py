"""demo_sources_server.py -- the outside world of config/sources.yaml.

    /usr/bin/python3 scripts/demo_sources_server.py DIR [PORT]

On 127.0.0.1, until interrupted:
  - an HTTP API on PORT (8765): GET /status.json answers a small JSON
    document that changes every 2 s (with an ETag), and 401 without the
    bearer token DEMO_TOKEN (default demo-token);
  - a WebSocket stream on PORT + 1 (python3-websockets): /ticks waits for
    a subscribe message {"op": "subscribe", "after": N} and sends a tick
    {"seq", "symbol", "price"} every 100 ms from seq N + 1 on;
  - DIR/app.log: a JSON line appended every 250 ms.
"""

import asyncio
import http.server
import json
import math
import os
import sys
import threading
import time

import websockets

TOKEN = os.environ.get("DEMO_TOKEN", "demo-token")
out_dir = sys.argv[1] if len(sys.argv) > 1 else "data/sources"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 8765
os.makedirs(out_dir, exist_ok=True)


class Api(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/status.json":
            self.send_error(404)
            return
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            self.send_error(401)
            return
        version = int(time.time() / 2)
        etag = '"v%d"' % version
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        body = json.dumps({"service": "demo", "version": version, "healthy": True,
                           "queue_depth": version % 7}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)


async def ticks(ws, path):
    if path != "/ticks":
        return
    try:
        sub = json.loads(await ws.recv())
        seq = int(sub.get("after", -1)) + 1
        while True:
            price = 100 + 5 * math.sin(seq / 20.0)
            await ws.send(json.dumps({"seq": seq, "symbol": "DEMO", "price": round(price, 4)}))
            seq += 1
            await asyncio.sleep(0.1)
    except websockets.exceptions.ConnectionClosed:
        pass  # the collector went away (the demo stopping it): nothing to tell


def write_log():
    n = 0
    with open(os.path.join(out_dir, "app.log"), "a") as f:
        while True:
            level = "warn" if n % 10 == 9 else "info"
            f.write(json.dumps({"ts": int(time.time() * 1e6), "level": level,
                                "msg": "request handled", "n": n}) + "\n")
            f.flush()
            n += 1
            time.sleep(0.25)


async def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=write_log, daemon=True).start()
    async with websockets.serve(ticks, "127.0.0.1", port + 1):
        print("serving: http://127.0.0.1:%d/status.json, ws://127.0.0.1:%d/ticks, %s/app.log"
              % (port, port + 1, out_dir), flush=True)
        await asyncio.Future()


try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
