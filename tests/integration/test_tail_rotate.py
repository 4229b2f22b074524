"""test_tail_rotate.py -- tail follows a file that Debian's logrotate rotates
under load, both ways, and is killed with -9 twice: every line once.

A writer thread appends 50,000 JSON lines ({"n": i, ...}, about 10,000 a
second) to app.log, opening it again when the path names another file (as
an application does on SIGHUP; it notices within 50 lines, so some lines
land in the renamed file after the rotation).  tail -> csv, and meanwhile:

  - at 12,000 lines: logrotate with `create` (rename, new file);
  - at 20,000: kill -9 of the tail; at 24,000, while it is down, logrotate
    `create` again (the file it was reading is renamed once more), then it
    is started again and resumes from its state file;
  - at 32,000: logrotate with `copytruncate`;
  - at 40,000: 8,000 lines in one write(), and at once kill -9 of the
    tail (in the middle of reading them, batches in flight), started again
    at once.

copytruncate loses, by its nature, what the writer appends between the
copy and the truncation, and what the tail had not read when the file was
truncated (it is only in the copy).  So, as an operator would, the test
pauses the writer, waits until the CSV holds every line written so far,
rotates, and lets the writer go on: the loss is made impossible, not
hidden -- every other line is counted.

Checks: the CSV holds n = 0..49,999 each exactly once (csv de-duplicates
on (stream, seq), so a line collected twice would be a second row), the
tail's logs show the rotations, the truncation and the resumptions, and
caught up it sleeps on inotify (wakes under 150 times in 2 s).
"""

import csv
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

LINES = 50000
RATE = 10000  # lines a second, about
BURST = 8000  # lines in one write() just before the second kill

bus = lib.Bus()
logs = bus.path("logs")
os.makedirs(logs)
app_log = os.path.join(logs, "app.log")
open(app_log, "w").close()
config = bus.write("c.yaml", bus.config_head() + """
workers:
  tail: {plugin: tail, paths: [%s], start_at: beginning, state_dir: %s, rescan_ms: 200,
         rotate_wait_ms: 2000, batch: 500}
  csv:  {plugin: csv, dir: %s}
pipelines:
  p: {from: tail, to: [csv]}
""" % (app_log, bus.path("state"), bus.path("csv")))


def logrotate(mode):
    conf = bus.write("lr-%s.conf" % mode,
                     "%s {\n    rotate 5\n    %s\n    missingok\n    nocompress\n}\n"
                     % (app_log, mode))
    return subprocess.run(["/usr/sbin/logrotate", "-f", "-s", bus.path("lr.state"), conf],
                          capture_output=True, text=True, timeout=30)


def line(i):
    return '{"n": %d, "text": "line %d of the rotation test"}\n' % (i, i)


class Writer(threading.Thread):
    """Appends LINES lines at about RATE a second; pauses on request, and
    writes a burst of lines in one write() on request."""

    def __init__(self):
        super().__init__(daemon=True)
        self.written = 0
        self.pause = threading.Event()
        self.idle = threading.Event()
        self.burst = 0
        self.burst_done = threading.Event()

    def run(self):
        f = open(app_log, "a")
        t0 = time.monotonic()
        i = 0
        while i < LINES:
            while self.pause.is_set():
                self.idle.set()
                time.sleep(0.005)
            self.idle.clear()
            if self.burst:
                k = min(self.burst, LINES - i)
                f.write("".join(line(j) for j in range(i, i + k)))
                f.flush()
                i += k
                self.written = i
                self.burst = 0
                self.burst_done.set()
                continue
            if i % 50 == 0:
                try:
                    moved = os.stat(app_log).st_ino != os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    moved = True
                if moved:
                    f.close()
                    f = open(app_log, "a")
            f.write(line(i))
            f.flush()
            i += 1
            self.written = i
            if i % 100 == 0:
                ahead = i / RATE - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        f.close()
        self.idle.set()


def csv_rows():
    total = 0
    for root, _, files in os.walk(bus.path("csv")):
        for name in files:
            if name.endswith(".csv"):
                with open(os.path.join(root, name), "rb") as f:
                    total += max(0, f.read().count(b"\n") - 1)
    return total


def wait_until(cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


starts = 0


def start_tail():
    global starts
    starts += 1
    return bus.start("tail-%d" % starts, os.path.join(bus.bin, "dcbus-worker"), "--instance",
                     "tail", "--config", config)


def kill_tail():
    p = bus.procs["tail-%d" % starts]
    p.send_signal(signal.SIGKILL)
    p.wait()


def copytruncate(writer):
    writer.pause.set()
    writer.idle.wait(30)
    caught_up = wait_until(lambda: csv_rows() >= writer.written, 60)
    bus.check("paused at %d lines, the CSV caught up before copytruncate" % writer.written,
              caught_up, "%d rows" % csv_rows())
    r = logrotate("copytruncate")
    bus.check("logrotate copytruncate", r.returncode == 0, r.stderr.strip())
    writer.pause.clear()


bus.broker(config)
bus.worker("csv", config)
bus.wait_log("broker", 'msg="worker joined" instance=csv', 10)
start_tail()
writer = Writer()
writer.start()

wait_until(lambda: writer.written >= 12000, 60)
r = logrotate("create")
bus.check("logrotate create at %d lines" % writer.written, r.returncode == 0, r.stderr.strip())

wait_until(lambda: writer.written >= 20000, 60)
kill_tail()
wait_until(lambda: writer.written >= 24000, 60)
r = logrotate("create")
bus.check("logrotate create while the tail is down (%d lines)" % writer.written,
          r.returncode == 0, r.stderr.strip())
start_tail()

wait_until(lambda: writer.written >= 32000, 60)
copytruncate(writer)

wait_until(lambda: writer.written >= 40000, 60)
writer.burst = BURST
writer.burst_done.wait(30)
kill_tail()  # while it reads the burst: batches in flight, the file half read
print("killed with %d lines written, %d rows in the CSV" % (writer.written, csv_rows()))
start_tail()

writer.join(60)
bus.check("the writer wrote every line", writer.written == LINES, str(writer.written))
bus.check("the CSV reaches %d rows" % LINES, wait_until(lambda: csv_rows() >= LINES, 60),
          "%d rows" % csv_rows())
# Caught up, the tail sleeps on its inotify descriptor (wait_fd): its
# thread wakes for heartbeats and its 100 ms collect_wait_ms, a few times
# a second, not every 5 ms as it did before it had one.
before = lib.wakeups(bus.procs["tail-%d" % starts].pid)
time.sleep(2.0)
idle = lib.wakeups(bus.procs["tail-%d" % starts].pid) - before
bus.check("caught up, the tail's thread wakes rarely: %d times in 2 s" % idle, idle < 150)
bus.stop("tail-%d" % starts)
ok, in_flight = bus.wait_delivered(30)
bus.check("nothing left in flight", ok, str(in_flight))

seen = {}
for root, _, files in os.walk(bus.path("csv")):
    for name in files:
        if name.endswith(".csv"):
            with open(os.path.join(root, name), newline="") as f:
                for row in csv.DictReader(f):
                    seen[int(row["n"])] = seen.get(int(row["n"]), 0) + 1
missing = [n for n in range(LINES) if n not in seen]
doubled = [n for n, c in seen.items() if c > 1]
bus.check("every line in the CSV", not missing,
          "%d missing, first %s" % (len(missing), missing[:5]))
bus.check("no line twice", not doubled, "%d doubled, first %s" % (len(doubled), doubled[:5]))

logs_text = "".join(bus.log("tail-%d" % k) for k in range(1, starts + 1))
bus.check("the tail saw the file rotated", "file_rotated" in logs_text)
bus.check("...and truncated by copytruncate", "file_truncated" in logs_text)
bus.check("each restart resumed from the state file",
          all("tail: resumed at mark" in bus.log("tail-%d" % k) for k in (2, 3)))
bus.finish()
