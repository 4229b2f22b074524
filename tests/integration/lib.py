"""lib.py -- what the integration tests share, for Python tests and shell.

Imported by the Python tests, and run by the shell tests (through lib.sh)
for the checks that are clearer in Python:

    lib.py stats ENDPOINT            the broker's stats, one "key value" a line:
                                     uptime_s, malformed, batches_in_flight, ...,
                                     spool.FIELD (bytes, segments, batches, ...)
                                     and INSTANCE.FIELD for every instance
    lib.py check-n FILE [ROWS]       the `n` column of a CSV file is 0, 1, 2, ...
                                     in order, each once (and ROWS rows)
    lib.py compare DIR               DIR/reference/*.csv (from dcbus-reference)
                                     and the one bus session under DIR hold the
                                     same streams, byte for byte

For Python tests it also has Bus: a private temp dir with short ipc
endpoints, the bus's processes started with their logs in that dir, and
every one of them stopped when the test ends, however it ends.

Needs /usr/bin/python3 with python3-zmq and python3-msgpack.
"""

import atexit
import csv
import filecmp
import http.client
import json
import os
import shutil
import socket
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

SIGNATURE = b"DCB1"


# ---------------------------------------------------------------------------
# The broker's stats request


def request(endpoint, op, args=None, timeout_s=3.0, curve=None):
    """Sends REQUEST {id, op, **args} to the broker at `endpoint`; returns
    the REPLY map, or raises TimeoutError if none comes.  With
    security.curve on, `curve` is (public key, secret key, the broker's
    public key)."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = curve
    try:
        sock.connect(endpoint)
        body = dict(args or {}, id=1, op=op)
        sock.send_multipart([SIGNATURE, b"REQUEST", msgpack.packb(body)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not sock.poll(100):
                continue
            frames = sock.recv_multipart()
            if len(frames) == 3 and frames[1] == b"REPLY":
                return msgpack.unpackb(frames[2], raw=False)
        raise TimeoutError("no %s reply from %s in %.1f s" % (op, endpoint, timeout_s))
    finally:
        sock.close()


def free_port():
    """A TCP port on 127.0.0.1 free a moment ago, for a server of the test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_answer(r):
    """An http.client response as (status, its body parsed as JSON or its
    bytes, headers)."""
    text = r.read()
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text
    return r.status, answer, dict(r.getheaders())


def http_post(port, path, body, headers, timeout=30):
    """POSTs body to 127.0.0.1:port/path; returns http_answer(), or
    (None, why, {})."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", path, body=body, headers=headers)
        answer = http_answer(c.getresponse())
        c.close()
        return answer
    except (OSError, http.client.HTTPException) as e:
        return None, str(e), {}


def wakeups(pid):
    """How many times process pid's main thread (the one that polls) has
    slept and woken: its voluntary context switches."""
    with open("/proc/%d/task/%d/status" % (pid, pid)) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return None


def wait_for(cond, timeout_s, step_s=0.2):
    """Until cond() is true (True) or timeout_s has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step_s)
    return False


def stats(endpoint, timeout_s=3.0, curve=None):
    """Asks the broker at `endpoint` for its stats; returns the result map,
    or raises TimeoutError if it does not answer."""
    reply = request(endpoint, "stats", timeout_s=timeout_s, curve=curve)
    if reply.get("ok"):
        return reply["result"]
    raise RuntimeError("stats refused: %r" % reply)


def instance_stats(result, name):
    """The stats map of instance `name` in a stats result."""
    for inst in result["instances"]:
        if inst["instance"] == name:
            return inst
    raise KeyError(name)


def wait_delivered(endpoint, timeout_s, curve=None):
    """Waits until the broker at `endpoint` has delivered every batch it took
    to every sink: its stats say batches_in_flight 0 (nothing left in memory
    or in its spool).  A collector ends once the broker has spooled its
    batches, so a test that checks what the sinks stored waits for this after
    the collector's exit.  Returns (True, 0), or (False, the last
    batches_in_flight read, None if the broker never answered) after
    timeout_s.  `curve` as for stats."""
    deadline = time.monotonic() + timeout_s
    in_flight = None
    while True:
        try:
            in_flight = stats(endpoint, min(3.0, max(0.5, deadline - time.monotonic())),
                              curve)["batches_in_flight"]
        except TimeoutError:
            pass
        if in_flight == 0:
            return True, 0
        if time.monotonic() >= deadline:
            return False, in_flight
        time.sleep(0.1)


def flat_stats(result):
    """Stats as (key, value) pairs: top-level scalars (a map such as spool
    as MAP.FIELD), then INSTANCE.FIELD."""
    pairs = []
    for k, v in result.items():
        if k == "instances":
            continue
        if isinstance(v, dict):
            pairs += [("%s.%s" % (k, field), x) for field, x in v.items()]
        else:
            pairs.append((k, v))
    for inst in result["instances"]:
        pairs += [("%s.%s" % (inst["instance"], k), v) for k, v in inst.items() if k != "instance"]
    return pairs


# ---------------------------------------------------------------------------
# Output checks


def check_n(path, rows=None):
    """Checks that the `n` column of CSV file `path` counts 0, 1, 2, ... row
    by row (every record present once, in order).  Returns (ok, message)."""
    name = os.path.basename(path)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or "n" not in header:
            return False, "%s: no header with an n column" % name
        col = header.index("n")
        expected = 0
        for row in reader:
            if int(row[col]) != expected:
                return False, "%s: data row %d has n=%s, expected %d (%s)" % (
                    name, expected + 1, row[col], expected,
                    "a duplicate, or out of order" if int(row[col]) < expected
                    else "records missing, or out of order")
            expected += 1
    if rows is not None and expected != rows:
        return False, "%s: n = 0..%d, expected %d rows" % (name, expected - 1, rows)
    return True, "%s: n = 0..%d in order, each once (%d rows)" % (name, expected - 1, expected)


def compare_sessions(csv_dir):
    """Compares the reference session's files under `csv_dir` with those of
    the one other session (the bus's).  Returns (ok, [messages])."""
    ref = os.path.join(csv_dir, "reference")
    others = sorted(d for d in os.listdir(csv_dir)
                    if d != "reference" and os.path.isdir(os.path.join(csv_dir, d)))
    if not os.path.isdir(ref):
        return False, ["no reference output in %s" % csv_dir]
    if len(others) != 1:
        return False, ["expected one bus session in %s, found %s" % (csv_dir, others)]
    bus = os.path.join(csv_dir, others[0])
    # The CSV files: a sealed session's folder also holds its seal (.dcbus-csv-sealed).
    ref_files = sorted(f for f in os.listdir(ref) if not f.startswith("."))
    bus_files = sorted(f for f in os.listdir(bus) if not f.startswith("."))
    if ref_files != bus_files:
        return False, ["streams differ: reference has %s, the bus (%s) has %s"
                       % (ref_files, others[0], bus_files)]
    ok, messages = True, []
    for name in ref_files:
        a, b = os.path.join(ref, name), os.path.join(bus, name)
        if filecmp.cmp(a, b, shallow=False):
            messages.append("%s: identical to the reference (%d bytes)" % (name, os.path.getsize(a)))
        else:
            ok = False
            messages.append("%s: differs from the reference (%d bytes here, %d in the reference)"
                            % (name, os.path.getsize(b), os.path.getsize(a)))
    return ok, messages


# ---------------------------------------------------------------------------
# Running the bus from a Python test


class Bus:
    """A temp dir, the processes of one test and their logs.

    Every process started through it is stopped (SIGTERM, then SIGKILL)
    by close(), which also runs at exit and on SIGTERM/SIGINT."""

    def __init__(self):
        self.build = os.environ.get("DCBUS_BUILD_DIR")
        if not self.build:
            sys.exit("run through ctest, or set DCBUS_BUILD_DIR")
        self.build = os.path.abspath(self.build)  # processes run in the temp dir
        self.bin = os.path.join(self.build, "bin")
        self.plugins = os.path.join(self.build, "plugins")
        # ipc paths must stay short (about 100 characters): not $TMPDIR.
        self.dir = tempfile.mkdtemp(prefix="dcb.", dir="/tmp")
        self.bus_ep = "ipc://%s/bus" % self.dir
        self.topics_ep = "ipc://%s/topics" % self.dir
        self.procs = {}
        self.passed = self.failed = 0
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sys.exit(130))

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def config_head(self, heartbeat_ms=200, broker_extra=""):
        """The broker and plugins_path lines of a config for this bus;
        `broker_extra` adds broker settings (", data_tap: true")."""
        return ("broker: {bus: %s, topics: %s, heartbeat_ms: %d, spool: %s%s}\n"
                "plugins_path: [%s]\n"
                % (self.bus_ep, self.topics_ep, heartbeat_ms, self.path("spool"), broker_extra,
                   self.plugins))

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def start(self, name, *argv):
        log = open(self.path(name + ".log"), "w")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.dir)
        log.close()
        return self.procs[name]

    def broker(self, config):
        return self.start("broker", os.path.join(self.bin, "dcbus-broker"), "--config", config)

    def worker(self, instance, config, replica=None):
        argv = [os.path.join(self.bin, "dcbus-worker"), "--instance", instance, "--config", config]
        name = instance
        if replica is not None:
            argv += ["--replica", str(replica)]
            name = "%s.%d" % (instance, replica)
        return self.start(name, *argv)

    def joined(self, config, *instances, timeout_s=20):
        """Starts each worker in turn and waits until the broker says it
        joined; True if all did."""
        ok = True
        for instance in instances:
            self.worker(instance, config)
            ok = self.wait_log("broker", 'msg="worker joined" instance=%s ' % instance,
                               timeout_s) and ok
        return ok

    def wait(self, name, timeout_s):
        """Waits for process `name` to exit; returns its status, or None."""
        try:
            return self.procs[name].wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, name, timeout_s=15):
        """SIGTERM, then SIGKILL after timeout_s; returns the exit status."""
        p = self.procs[name]
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def wait_delivered(self, timeout_s):
        """Until the broker has delivered everything it took to every sink
        (module-level wait_delivered); returns (ok, last batches_in_flight)."""
        return wait_delivered(self.bus_ep, timeout_s)

    def log(self, name):
        with open(self.path(name + ".log"), errors="replace") as f:
            return f.read()

    def wait_log(self, name, needle, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log(name):
                return True
            time.sleep(0.05)
        return False

    def reference(self, config):
        """Runs dcbus-reference on `config`; returns its exit status."""
        with open(self.path("reference.log"), "w") as log:
            return subprocess.call([os.path.join(self.bin, "dcbus-reference"), "--config", config],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                   timeout=120)

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
            print("ok: %s%s" % (what, " (%s)" % (detail,) if detail else ""))
        else:
            self.failed += 1
            print("FAIL: %s%s" % (what, " (%s)" % (detail,) if detail else ""))
        return ok

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if os.path.isdir(self.dir):
            if self.failed:
                self.show_logs()
            if os.environ.get("DCBUS_KEEP_TMP"):
                print("kept %s" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def show_logs(self, lines=30):
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                print("--- %s (last %d lines)" % (name, lines))
                for line in self.log(name[:-4]).splitlines()[-lines:]:
                    print("    | " + line)

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)


# ---------------------------------------------------------------------------
# Command line, for the shell tests


def main(argv):
    if len(argv) >= 2 and argv[0] == "stats":
        for key, value in flat_stats(stats(argv[1])):
            print(key, value)
        return 0
    if len(argv) in (2, 3) and argv[0] == "check-n":
        ok, message = check_n(argv[1], int(argv[2]) if len(argv) == 3 else None)
        print(message)
        return 0 if ok else 1
    if len(argv) == 2 and argv[0] == "compare":
        ok, messages = compare_sessions(argv[1])
        print("\n".join(messages))
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
