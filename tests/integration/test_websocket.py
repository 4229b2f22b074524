"""test_websocket.py -- the websocket collector against real WebSocket servers.

The test starts, on loopback, a WebSocket server of Debian's
python3-websockets (one path per case, pinging every client every 0.3 s
and closing on a missing pong), the same over TLS with a certificate of
a CA it makes with openssl, and a bare socket server that speaks just
enough of the protocol to misbehave.  Then a bus: one websocket instance
per case into csv, and a subscriber to error.*.  It checks that

  - the subscribe messages are sent, in order, first on every connection,
    and that a server dropping the connection mid-stream (twice) is
    reconnected to: every message of the stream once, in order;
  - the server's pings are answered (no connection closed for a missing
    pong) and the collector sends its own (the bare server sees PING
    frames and, as it never answers, the collector reconnects);
  - a JSON object, an array, JSON lines, a binary frame: their records,
    with the CollectedData metadata (collection_method websocket, url,
    source_id, frame, timestamp); malformed JSON is a VALIDATION error and
    the stream goes on;
  - a bearer token from ${ENV} is accepted, and a server refusing the
    handshake with 401 is a CONNECTION error with status_code 401;
  - wss:// with ca_file: the records; without it the certificate is
    refused (a CONNECTION error);
  - a frame that never ends: a VALIDATION error once message_timeout_ms
    passes, and a new connection;
  - a server process killed with SIGKILL mid-stream and started again on
    the same port (a second process of python3-websockets): the collector
    connects again once it is back, subscribes from the last seq it has,
    and every message is stored exactly once;
  - idle on an open connection, the worker's main thread wakes fewer
    than 100 times in 2 s (it waits on the socket, its wait_fd);
  - kill -9 of the worker: of a live stream nothing is stored twice (what
    came while it was down is lost); of a stream with seq_field, whose
    server replays from the {last_seq} of the subscribe message, every
    message is stored exactly once across a reconnection and the kill.
"""

import asyncio
import base64
import csv
import glob
import hashlib
import http
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import msgpack
import websockets
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TOKEN = "ws-s3cret"
STREAM_N = 300  # /stream: messages in all, the connection dropped after 50 on the first two
REPLAY_N = 400  # /replay: seqs 0..399, from the subscribe message's "from" + 1
LIVE_N = 600    # /live: a live counter, sent to whoever is connected
FEED_N = 500    # /feed of the separate server process: seqs 0..499, from "from" + 1

# The server that is killed: a process of its own, so SIGKILL takes it
# down as a crash would (its sockets closed by the kernel, no close frame).
FEED_SERVER = r"""
import asyncio, json, sys
import websockets

port, log, n_max = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

async def feed(ws, path):
    sub = json.loads(await asyncio.wait_for(ws.recv(), 5))
    with open(log, "a") as f:
        f.write("%d\n" % sub["from"])
    for n in range(sub["from"] + 1, n_max):
        await ws.send(json.dumps({"seq": n, "kind": "feed"}))
        await asyncio.sleep(0.005)
    await asyncio.sleep(60)

async def main():
    async with websockets.serve(feed, "127.0.0.1", port, ping_interval=0.3):
        await asyncio.Future()

asyncio.run(main())
"""

bus = lib.Bus()
conns = {}  # path -> [{"received": [...], "close_code": ...}]
lock = threading.Lock()
state = {"stream": 0, "live": 0}


def new_conn(path):
    c = {"received": [], "close_code": None}
    with lock:
        conns.setdefault(path, []).append(c)
        return c, len(conns[path])


def conns_of(path):
    with lock:
        return [dict(c) for c in conns.get(path, [])]


# ---------------------------------------------------------------------------
# The WebSocket servers (python3-websockets)


async def recv_json(ws, conn):
    text = await asyncio.wait_for(ws.recv(), 5)
    conn["received"].append(text)
    return json.loads(text)


async def h_stream(ws, conn, index):
    for _ in range(2):
        await recv_json(ws, conn)
    sent = 0
    while state["stream"] < STREAM_N:
        await ws.send(json.dumps({"n": state["stream"], "kind": "stream"}))
        state["stream"] += 1
        sent += 1
        if index <= 2 and sent == 50:
            await ws.close(1001, "going away, mid-stream")
            return
        await asyncio.sleep(0.003)
    await asyncio.sleep(60)


async def h_kinds(ws, conn, index):
    await ws.send('{"kind": "object", "i": 1}')
    await ws.send('[{"kind": "array", "i": 2}, {"kind": "array", "i": 3}]')
    await ws.send('{"kind": "lines", "i": 4}\n{"kind": "lines", "i": 5}\n')
    await ws.send(b"\x00\x01\xff\xfe")
    await ws.send('{"kind": "broken", "i": ')
    await ws.send('{"kind": "end", "i": 6}')
    await asyncio.sleep(60)


async def h_auth(ws, conn, index):
    await ws.send('{"kind": "auth"}')
    await asyncio.sleep(60)


async def h_replay(ws, conn, index):
    sub = await recv_json(ws, conn)
    n = sub["from"] + 1
    while n < REPLAY_N:
        await ws.send(json.dumps({"seq": n, "kind": "replay"}))
        n += 1
        if index == 1 and n == 100:
            await ws.close(1001, "going away, mid-stream")
            return
        await asyncio.sleep(0.006)
    await asyncio.sleep(60)


async def h_live(ws, conn, index):
    while state["live"] < LIVE_N:
        await ws.send(json.dumps({"n": state["live"], "kind": "live"}))
        state["live"] += 1
        await asyncio.sleep(0.004)
    await asyncio.sleep(60)


async def h_tls(ws, conn, index):
    await ws.send('{"kind": "tls"}')
    await asyncio.sleep(60)


HANDLERS = {"/stream": h_stream, "/kinds": h_kinds, "/auth": h_auth, "/replay": h_replay,
            "/live": h_live, "/tls": h_tls}


async def handler(ws, path):
    conn, index = new_conn(path)
    try:
        await HANDLERS[path](ws, conn, index)
    except (websockets.ConnectionClosed, asyncio.TimeoutError):
        pass
    finally:
        conn["close_code"] = ws.close_code


async def process_request(path, headers):
    if path not in HANDLERS:
        return http.HTTPStatus.NOT_FOUND, [], b"no such path\n"
    if path == "/auth" and headers.get("Authorization") != "Bearer " + TOKEN:
        new_conn("/auth-refused")
        return http.HTTPStatus.UNAUTHORIZED, [], b"bad token\n"
    return None


def make_certs():
    """A CA and a certificate for localhost signed by it (openssl)."""
    d = bus.path("tls")
    os.makedirs(d)
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=dcbus test CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return d


ports = {}
loop = asyncio.new_event_loop()


async def start_servers(tls_dir):
    plain = await websockets.serve(handler, "127.0.0.1", 0, process_request=process_request,
                                   ping_interval=0.3, ping_timeout=1.0)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(tls_dir, "server.pem"), os.path.join(tls_dir, "server.key"))
    secure = await websockets.serve(handler, "127.0.0.1", 0, process_request=process_request,
                                    ssl=ctx, ping_interval=0.3, ping_timeout=1.0)
    ports["ws"] = plain.sockets[0].getsockname()[1]
    ports["wss"] = secure.sockets[0].getsockname()[1]


def serve(tls_dir, ready):
    asyncio.set_event_loop(loop)
    loop.run_until_complete(start_servers(tls_dir))
    ready.set()
    loop.run_forever()


# ---------------------------------------------------------------------------
# A bare server that misbehaves: /never sends a frame that never ends,
# /mute never answers (and notes the opcodes of what it gets).

opcodes = []  # of the frames the client sent to /mute


def handshake(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    lines = data.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    key = [ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    return path


def read_frames(sock):
    buf = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return
        buf += chunk
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            head = 2 + (2 if n == 126 else 8 if n == 127 else 0) + 4
            if len(buf) < head:
                break
            if n == 126:
                n = int.from_bytes(buf[2:4], "big")
            elif n == 127:
                n = int.from_bytes(buf[2:10], "big")
            if len(buf) < head + n:
                break
            with lock:
                opcodes.append(buf[0] & 0x0F)
            buf = buf[head + n:]


def bare_conn(sock):
    try:
        path = handshake(sock)
        if path is None:
            return
        new_conn(path)
        if path == "/never":
            # 1 MB announced, 40 KB sent: more than libwebsockets holds back.
            sock.sendall(bytes([0x81, 127]) + (1 << 20).to_bytes(8, "big") + b"x" * 40000)
            while sock.recv(4096):
                pass
        else:
            read_frames(sock)
    except OSError:
        pass
    finally:
        sock.close()


bare = socket.socket()
bare.bind(("127.0.0.1", 0))
bare.listen(16)


def bare_serve():
    while True:
        s, _ = bare.accept()
        threading.Thread(target=bare_conn, args=(s,), daemon=True).start()


# ---------------------------------------------------------------------------
# The bus

tls_dir = make_certs()
ready = threading.Event()
threading.Thread(target=serve, args=(tls_dir, ready), daemon=True).start()
threading.Thread(target=bare_serve, daemon=True).start()
ready.wait(10)
os.environ["WS_TEST_TOKEN"] = TOKEN
ws = "ws://127.0.0.1:%d" % ports["ws"]
wss = "wss://localhost:%d" % ports["wss"]
raw = "ws://127.0.0.1:%d" % bare.getsockname()[1]




feed_port, feed_log = lib.free_port(), bus.path("feed-connections.log")
feed_script = bus.write("feed_server.py", FEED_SERVER)


def start_feed_server():
    proc = subprocess.Popen(["/usr/bin/python3", feed_script, str(feed_port), feed_log,
                             str(FEED_N)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # listening once a connection is taken
        try:
            socket.create_connection(("127.0.0.1", feed_port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the feed server did not start")


feed_server = start_feed_server()

config = bus.write("bus.yaml", bus.config_head() + """workers:
  stream:   {plugin: websocket, url: "%(ws)s/stream", stream: stream, limit: %(stream_n)d,
             backoff_ms: 100, backoff_max_ms: 400, ping_interval_ms: 200,
             subscribe: ['{"op": "subscribe", "channel": "a"}', '{"op": "subscribe", "channel": "b"}']}
  kinds:    {plugin: websocket, url: "%(ws)s/kinds", stream: kinds, source_id: kinds-src}
  csv_kinds: {plugin: csv, dir: %(csv)s-kinds, columns: [kind, i, raw_data, collected]}
  auth_ok:  {plugin: websocket, url: "%(ws)s/auth", stream: auth_ok, limit: 1,
             bearer_token: "${WS_TEST_TOKEN}"}
  auth_bad: {plugin: websocket, url: "%(ws)s/auth", stream: auth_bad, bearer_token: wrong,
             backoff_ms: 100, backoff_max_ms: 400}
  replay:   {plugin: websocket, url: "%(ws)s/replay", stream: replay, limit: %(replay_n)d,
             seq_field: seq, backoff_ms: 100, backoff_max_ms: 400,
             subscribe: ['{"op": "from", "from": {last_seq}}']}
  live:     {plugin: websocket, url: "%(ws)s/live", stream: live}
  tls_ok:   {plugin: websocket, url: "%(wss)s/tls", stream: tls_ok, limit: 1,
             ca_file: %(ca)s}
  tls_noca: {plugin: websocket, url: "%(wss)s/tls", stream: tls_noca, backoff_ms: 200,
             backoff_max_ms: 400}
  never:    {plugin: websocket, url: "%(raw)s/never", stream: never, message_timeout_ms: 500,
             backoff_ms: 100, backoff_max_ms: 200}
  mute:     {plugin: websocket, url: "%(raw)s/mute", stream: mute, ping_interval_ms: 200,
             pong_timeout_ms: 300, backoff_ms: 100, backoff_max_ms: 200}
  feed:     {plugin: websocket, url: "ws://127.0.0.1:%(feed_port)d/feed", stream: feed,
             limit: %(feed_n)d, seq_field: seq, backoff_ms: 100, backoff_max_ms: 400,
             subscribe: ['{"op": "from", "from": {last_seq}}']}
  csv: {plugin: csv, dir: %(csv)s}
pipelines:
""" % {"feed_port": feed_port, "feed_n": FEED_N, "ws": ws, "wss": wss, "raw": raw, "csv": bus.path("csv"), "stream_n": STREAM_N,
       "replay_n": REPLAY_N, "ca": os.path.join(tls_dir, "ca.pem")}
    + "  p_kinds: {from: kinds, to: [csv_kinds]}\n"
    + "".join("  p_%s: {from: %s, to: [csv]}\n" % (n, n) for n in
              ("stream", "auth_ok", "auth_bad", "replay", "live", "tls_ok",
               "tls_noca", "never", "mute", "feed")))

errors = []
sub = zmq.Context.instance().socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"error.")
bus.broker(config)
sub.connect(bus.topics_ep)
time.sleep(0.3)
NAMES = ("stream", "kinds", "auth_ok", "auth_bad", "replay", "live", "tls_ok", "tls_noca",
         "never", "mute", "feed")
for name in ("csv", "csv_kinds") + NAMES:
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
    folder = "csv-kinds" if stream == "kinds" else "csv"
    for path in sorted(glob.glob(bus.path(folder, "*", stream + ".csv"))):
        with open(path, newline="") as f:
            out += list(csv.DictReader(f))
    return out


def errors_of(source):
    return [m for _, m in errors if (m.get("details") or {}).get("source_id") == source]


# The feed server killed mid-stream, and started again on its port.
bus.check("feed: rows before the server is killed", wait_for(lambda: len(rows("feed")) >= 150, 20),
          "%d rows" % len(rows("feed")))
feed_server.kill()
feed_server.wait()
at_kill = len(rows("feed"))
pump(0.5)  # the collector finds the server gone, and its attempts refused
feed_server = start_feed_server()

# kill -9 of the live collector and of the replaying one, mid-stream.
for name in ("live", "replay"):
    bus.check("%s: rows before the kill" % name, wait_for(lambda: len(rows(name)) >= 120, 20),
              "%d rows" % len(rows(name)))
    bus.procs[name].send_signal(signal.SIGKILL)
    bus.procs[name].wait()
    time.sleep(0.2)
    bus.worker(name, config)

bus.check("stream, replay, auth_ok, tls_ok reach their limit and end",
          wait_for(lambda: all(bus.wait(n, 0) is not None
                               for n in ("stream", "replay", "auth_ok", "tls_ok", "feed")), 40))
for name in ("stream", "replay", "auth_ok", "tls_ok", "feed"):
    bus.check("%s ended cleanly" % name, bus.wait(name, 0) == 0, str(bus.wait(name, 0)))
# Idle on an open connection (the kinds server sends nothing more, only its
# pings every 0.3 s), the collector sleeps until a frame comes (wait_fd):
# the main thread wakes a few times a second, not every few ms.
before = lib.wakeups(bus.procs["kinds"].pid)
time.sleep(2)
idle = lib.wakeups(bus.procs["kinds"].pid) - before
bus.check("kinds: idle on an open connection, the collector wakes fewer than 100 times in 2 s",
          idle < 100, "%d wake-ups" % idle)
wait_for(lambda: state["live"] >= LIVE_N and len(conns_of("/mute")) >= 2
         and len(conns_of("/never")) >= 2, 20)
pump(0.5)
for name in ("kinds", "live", "auth_bad", "tls_noca", "never", "mute"):
    bus.check("%s stops cleanly" % name, bus.stop(name) == 0)
ok, left = bus.wait_delivered(30)
bus.check("the broker delivered every batch", ok, "in flight: %s" % left)
pump(0.3)

# Subscribe after each (re)connection; every message of the stream once.
sc = conns_of("/stream")
subs = ['{"op": "subscribe", "channel": "a"}', '{"op": "subscribe", "channel": "b"}']
bus.check("stream: the server dropped it twice, three connections", len(sc) == 3, str(len(sc)))
bus.check("stream: the subscribe messages first, in order, on every connection",
          all(c["received"] == subs for c in sc), str([c["received"] for c in sc]))
ns = [int(r["n"]) for r in rows("stream")]
bus.check("stream: every message once, in order, across the reconnections",
          ns == list(range(STREAM_N)), "%d rows" % len(ns))
bus.check("stream: the server's pings answered (no connection closed for a missing pong)",
          all(c["close_code"] != 1011 for c in sc), str([c["close_code"] for c in sc]))
lost = [m for m in errors_of("stream") if m["error_type"] == "CONNECTION"]
bus.check("stream: each connection lost is reported", len(lost) == 2
          and all("going away" in m["message"] for m in lost), str([m["message"] for m in lost]))
meta = json.loads(rows("stream")[0]["collected"]) if ns else {}
bus.check("records carry the CollectedData metadata",
          meta.get("collection_method") == "websocket" and meta.get("url") == ws + "/stream"
          and meta.get("source_id") == "stream" and meta.get("data_format") == "json"
          and meta.get("frame") == "text" and meta.get("connection") == 1
          and meta.get("timestamp", 0) > 0, str(meta))

# Message kinds.
kinds = rows("kinds")
got = [(r["kind"], r["i"]) for r in kinds if r["kind"]]
bus.check("kinds: an object, an array, JSON lines, then on after malformed JSON",
          got == [("object", "1"), ("array", "2"), ("array", "3"), ("lines", "4"), ("lines", "5"),
                  ("end", "6")], str(got))
binary = [r for r in kinds if r.get("raw_data")]
bus.check("kinds: a binary frame is one raw record of its bytes",
          len(binary) == 1 and binary[0]["raw_data"] == "\\x0001fffe"
          and json.loads(binary[0]["collected"]).get("frame") == "binary"
          and json.loads(binary[0]["collected"]).get("data_format") == "raw", str(binary))
bus.check("kinds: source_id as set", json.loads(kinds[0]["collected"])["source_id"] == "kinds-src"
          if kinds else False)
bad = errors_of("kinds-src")
bus.check("kinds: malformed JSON is a VALIDATION error naming the URL",
          any(m["error_type"] == "VALIDATION" and "malformed json" in m["message"].lower()
              and ws + "/kinds" in m["message"] for m in bad), str(bad[:1]))

# Credentials.
bus.check("auth: the right token is let in", [r["kind"] for r in rows("auth_ok")] == ["auth"])
refused = [m for m in errors_of("auth_bad") if m["error_type"] == "CONNECTION"]
bus.check("auth: a 401 on the handshake is a CONNECTION error with status_code 401",
          any(m["details"]["status_code"] == 401 and "refused the credentials" in m["message"]
              for m in refused), str(refused[:1]))
bus.check("auth: the refusals are reported ever more rarely (1st, 2nd, 4th... attempt)",
          len(conns_of("/auth-refused")) > len(refused) >= 2,
          "%d attempts, %d reports" % (len(conns_of("/auth-refused")), len(refused)))
bus.check("auth: nothing taken with the wrong token", rows("auth_bad") == [])

# TLS.
bus.check("wss with ca_file: the records", [r["kind"] for r in rows("tls_ok")] == ["tls"])
noca = [m for m in errors_of("tls_noca") if m["error_type"] == "CONNECTION"]
bus.check("wss without the CA: the certificate refused, a CONNECTION error",
          noca != [] and rows("tls_noca") == [], str(noca[:1]))

# Bad frames, own pings.
nev = [m for m in errors_of("never") if m["error_type"] == "VALIDATION"]
bus.check("a frame that never ends: a VALIDATION error after message_timeout_ms",
          any("not complete within message_timeout_ms" in m["message"] for m in nev), str(nev[:1]))
bus.check("a frame that never ends: the collector connects again", len(conns_of("/never")) >= 2)
with lock:
    pings = opcodes.count(9)
bus.check("the collector sends its own pings", pings >= 1, "%d pings" % pings)
mute = [m for m in errors_of("mute") if m["error_type"] == "CONNECTION"]
bus.check("a server that answers no ping: dropped, reported and connected to again",
          len(conns_of("/mute")) >= 2 and any("no pong" in m["message"] for m in mute),
          str(mute[:1]))

# kill -9.
live = [int(r["n"]) for r in rows("live")]
bus.check("live: after kill -9, nothing stored twice (and in order)",
          live == sorted(set(live)) and len(live) >= 120, "%d rows" % len(live))
rc = conns_of("/replay")
seqs = [int(r["seq"]) for r in rows("replay")]
bus.check("replay: every seq exactly once across a reconnection and a kill -9",
          seqs == list(range(REPLAY_N)), "%d rows, %d distinct" % (len(seqs), len(set(seqs))))
froms = [json.loads(c["received"][0])["from"] for c in rc if c["received"]]
bus.check("replay: each connection subscribed from the last seq it had (-1 at first)",
          len(froms) >= 3 and froms[0] == -1 and froms[1] == 99 and froms == sorted(froms),
          str(froms))

# The server killed and started again.
feed_server.kill()
feed_server.wait()
fseqs = [int(r["seq"]) for r in rows("feed")]
bus.check("feed: the server was killed mid-stream", 150 <= at_kill < FEED_N, "%d rows" % at_kill)
bus.check("feed: every seq exactly once across the server's kill -9 and restart",
          fseqs == list(range(FEED_N)), "%d rows, %d distinct" % (len(fseqs), len(set(fseqs))))
with open(feed_log) as f:
    ffroms = [int(x) for x in f.read().split()]
bus.check("feed: connected again to the restarted server, subscribing from its last seq",
          len(ffroms) >= 2 and ffroms[0] == -1 and ffroms[-1] >= at_kill - 1
          and ffroms == sorted(ffroms), str(ffroms))

bus.finish()
