"""influx_env.py -- a throwaway InfluxDB 1.x server for tests and benchmarks.

From Python:

    import influx_env
    srv = influx_env.Influx()          # started on a free loopback port
    srv.url                            # "http://127.0.0.1:PORT"
    srv.query("SELECT * FROM m", db="d")   # the /query answer, decoded JSON
    srv.points("SELECT * FROM m", db="d")  # [{column: value}, ...] of the first series
    srv.pause(); srv.resume()          # SIGSTOP / SIGCONT: a server that hangs
    srv.stop(); srv.start()            # kill and start again on the same port and data
    srv.close()                        # stopped and its directory removed (also at exit)

From a shell (a benchmark, a test in bash):

    eval "$(python3 tests/integration/influx_env.py start)"   # INFLUX_URL INFLUX_PID INFLUX_DIR
    ...
    python3 tests/integration/influx_env.py stop "$INFLUX_DIR"

Debian's `influxd` (package influxdb, 1.6) runs with a config of its own in
a temporary directory: meta, data and WAL there, HTTP and the RPC
bind-address on 127.0.0.1 only, reporting, the _internal monitor and the
HTTP log off, timestamps in nanoseconds.  INFLUXD names another binary;
INFLUX_ENV_KEEP=1 keeps the directory (its log is influxd.log).
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import lib

CONFIG = """reporting-disabled = true
bind-address = "127.0.0.1:%(rpc)d"
[meta]
  dir = "%(dir)s/meta"
  logging-enabled = false
[data]
  dir = "%(dir)s/data"
  wal-dir = "%(dir)s/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "10s"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:%(http)d"
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
[continuous_queries]
  enabled = false
"""




class Influx:
    """One influxd of its own; started by the constructor."""

    def __init__(self, binary=None, timeout_s=30):
        self.binary = binary or os.environ.get("INFLUXD", "influxd")
        self.dir = tempfile.mkdtemp(prefix="dcbus-influx.", dir="/tmp")
        self.http_port, self.rpc_port = lib.free_port(), lib.free_port()
        self.url = "http://127.0.0.1:%d" % self.http_port
        self.config = os.path.join(self.dir, "influxd.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG % {"dir": self.dir, "rpc": self.rpc_port, "http": self.http_port})
        self.proc = None
        atexit.register(self.close)
        self.start(timeout_s)

    def start(self, timeout_s=30):
        """Starts the server (again) and waits until /ping answers."""
        log = open(os.path.join(self.dir, "influxd.log"), "a")
        self.proc = subprocess.Popen([self.binary, "run", "-config", self.config], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("influxd exited %d: %s" % (self.proc.returncode, self.log()))
            if self.ping():
                return
            time.sleep(0.1)
        raise RuntimeError("influxd did not answer /ping in %d s: %s" % (timeout_s, self.log()))

    def ping(self):
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                return r.status == 204
        except OSError:
            return False

    def log(self):
        with open(os.path.join(self.dir, "influxd.log"), errors="replace") as f:
            return f.read()[-2000:]

    def stop(self, sig=signal.SIGKILL):
        """Kills the server (SIGKILL by default: a crash) and waits for it."""
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pause(self):
        """SIGSTOP: the port still accepts connections, nothing answers."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def query(self, q, db=None, method=None, epoch="ns"):
        """Runs InfluxQL `q` through /query; returns the decoded answer.  A
        statement that changes something (CREATE, DROP) goes as POST."""
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        body = urllib.parse.urlencode(params).encode()
        post = method == "POST" or q.lstrip().upper().startswith(("CREATE", "DROP", "ALTER"))
        if post:
            req = urllib.request.Request(self.url + "/query", data=body)
        else:
            req = urllib.request.Request(self.url + "/query?" + body.decode())
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read().decode())

    def points(self, q, db=None):
        """The rows of every series `q` returns, as dicts (column -> value),
        a GROUP BY's tags included."""
        rows = []
        for result in self.query(q, db).get("results", []):
            if "error" in result:
                raise RuntimeError(result["error"])
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    row = dict(tags)
                    row.update(zip(series["columns"], values))
                    rows.append(row)
        return rows

    def write(self, lines, db, precision="ns"):
        """Posts line protocol to /write; returns the HTTP status."""
        url = "%s/write?%s" % (self.url, urllib.parse.urlencode({"db": db, "precision": precision}))
        req = urllib.request.Request(url, data=lines.encode() if isinstance(lines, str) else lines)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def close(self):
        self.stop()
        if self.dir and os.path.isdir(self.dir):
            if os.environ.get("INFLUX_ENV_KEEP") == "1":
                print("influx_env: kept %s" % self.dir, file=sys.stderr)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


def main(argv):
    """`start`: starts a detached server and prints shell assignments;
    `stop DIR`: stops the server of DIR and removes DIR."""
    if len(argv) == 2 and argv[1] == "start":
        srv = Influx()
        atexit.unregister(srv.close)
        print("INFLUX_URL=%s INFLUX_PID=%d INFLUX_DIR=%s" % (srv.url, srv.proc.pid, srv.dir))
        with open(os.path.join(srv.dir, "pid"), "w") as f:
            f.write(str(srv.proc.pid))
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        pidfile = os.path.join(argv[2], "pid")
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                pid = int(f.read())
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        if os.environ.get("INFLUX_ENV_KEEP") != "1":
            shutil.rmtree(argv[2], ignore_errors=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
