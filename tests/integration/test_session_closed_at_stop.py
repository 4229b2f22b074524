"""test_session_closed_at_stop.py -- a bus that stops closes its session
first, so the sinks finish that session's files before they are stopped.

1. `dcbus run` of a camera into the asdf sink and mock-storage (sessions:
   true), stopped with SIGTERM while the idle session is still going:
   - dcbus run exits 0 and says every sink closed the session;
   - the idle session's file is in place once it returns: one .asdf file,
     opened by python3-asdf with validation on, its meta naming the
     session as completed, every frame the camera sent (as many as
     mock-storage counted, each equal to the camera README's formula);
   - no staging of it is left, and the live catalog has its row;
   - mock-storage wrote its session_close line.
   Before this, the broker ended the session only when it stopped itself,
   with the sinks gone: the file appeared only at the bus's next start.
2. The same bus run by hand (as supervisord or systemd would): the camera
   stopped, then `dcbus sessions close --wait 30` returns 0 once the sink
   has finished the file, which is there before the sink is stopped; a
   second close answers the same session; a new session is refused while
   the bus is stopping; a bad status is refused; the sink killed -9 and
   started again while the bus stops says it closed the session (from its
   READY), and nothing is staged again.  After a restart of the broker and the
   sink, the ended session is not written twice.
"""

import glob
import os
import re
import signal
import sqlite3
import subprocess
import sys

import asdf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from instruments_ref import frame  # noqa: E402

W, H, SEED = 48, 32, 5

bus = lib.Bus()


def config_for(name):
    data = bus.path(name, "data")
    text = bus.config_head() + """
workers:
  cam: {plugin: camera, camera: main, width: %d, height: %d, dtype: uint16, rate: 200,
        batch: 2, seed: %d}
  archive: {plugin: asdf, dir: %s}
  lines: {plugin: mock-storage, file: %s, sessions: true}
pipelines:
  frames: {from: cam, to: [archive, lines]}
""" % (W, H, SEED, data, bus.path(name, "lines.csv"))
    text = text.replace(bus.path("spool"), bus.path(name, "spool"))  # a spool of its own
    os.makedirs(bus.path(name), exist_ok=True)
    return bus.write(name + ".yaml", text), data


def dcbus(*args, timeout=60):
    p = subprocess.run([os.path.join(bus.bin, "dcbus")] + list(args), cwd=bus.dir,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def stored(name):
    """Records the archive sink has taken so far (0 if no answer)."""
    try:
        return lib.instance_stats(lib.stats(bus.bus_ep), name)["records_in"]
    except (KeyError, RuntimeError, TimeoutError, OSError):
        return 0


def session_files(data):
    return sorted(glob.glob(os.path.join(data, "[0-9]*", "*", "*", "*.asdf")))


def staged(data):
    return [p for p in glob.glob(os.path.join(data, ".staging", "*")) if os.path.isdir(p)]


def opened(name):
    """The first session mock-storage was told of (its "#open,ID,..." line)."""
    with open(bus.path(name, "lines.csv")) as f:
        for line in f:
            if line.startswith("#open,"):
                return line.split(",")[1]
    return None


def lines_of(name, session):
    with open(bus.path(name, "lines.csv")) as f:
        rows = [line.rstrip("\n") for line in f]
    # One line a record (a camera record has no n: two frames of a batch
    # give the same line, so lines are counted, not told apart).
    records = [r for r in rows if r.endswith("," + session) and not r.startswith("#")]
    closes = [r for r in rows if r.startswith("#close,%s," % session)]
    return records, closes


def check_closed(label, name, data, closed):
    """The session closed (`closed`, as the closing side said it) is the
    one the sinks had, and both sinks finished it."""
    session = opened(name)
    bus.check("%s: the closed session is the one the sinks had" % label,
              closed is not None and closed == session, (session, closed))
    records, closes = lines_of(name, session)
    check_file(label, data, session, len(records))
    bus.check("%s: mock-storage closed it" % label, len(closes) == 1, closes)
    return session


def check_file(label, data, session, sent):
    """The session's one file: complete, exact, in the catalog."""
    files = session_files(data)
    bus.check("%s: one session file in place" % label, len(files) == 1, files)
    bus.check("%s: no staging left" % label, staged(data) == [], staged(data))
    if len(files) != 1:
        return
    with asdf.open(files[0], validate_checksums=True) as af:
        meta = dict(af["meta"])
        bus.check("%s: the file is the session's" % label, meta.get("session_id") == session,
                  meta.get("session_id"))
        bus.check("%s: completed" % label, meta.get("status") == "completed", meta.get("status"))
        frames = np.asarray(af["cameras"]["main"]["frames"])
        bus.check("%s: every frame the camera sent" % label,
                  frames.shape == (sent, H, W) and sent > 0, "%s against %d" % (frames.shape, sent))
        bad = [n for n in range(min(sent, frames.shape[0]))
               if not np.array_equal(frames[n], frame(n, W, H, "uint16", SEED))]
        bus.check("%s: each frame exact" % label, not bad, bad[:5])
    db = sqlite3.connect(os.path.join(data, "catalog", "catalog.sqlite"))
    rows = db.execute("SELECT status, path FROM sessions WHERE session_id = ?",
                      (session,)).fetchall()
    db.close()
    bus.check("%s: in the live catalog" % label,
              len(rows) == 1 and os.path.samefile(rows[0][1], files[0]), rows)


# ---------------------------------------------------------------------------
# 1. dcbus run, stopped with SIGTERM

config, data = config_for("run")
log = open(bus.path("run.log"), "w")
run = subprocess.Popen([os.path.join(bus.bin, "dcbus"), "run", config], cwd=bus.dir,
                       stdout=log, stderr=subprocess.STDOUT)
bus.procs["run"] = run
log.close()
bus.check("run: frames stored", lib.wait_for(lambda: stored("archive") >= 200, 60))
bus.check("run: no file while the session goes on", session_files(data) == [])
run.send_signal(signal.SIGTERM)
rc = bus.wait("run", 90)
bus.check("run: dcbus run exits 0", rc == 0, rc)
text = bus.log("run")
m = re.search(r'msg="session closed; waiting for the sinks to finish it" session=(\S+)', text)
bus.check("run: the session was closed before the sinks stopped", m is not None)
bus.check("run: every sink closed it", 'msg="every sink closed the session"' in text)
check_closed("run", "run", data, m and m.group(1))

# ---------------------------------------------------------------------------
# 2. by hand: dcbus sessions close --wait

config, data = config_for("hand")
bus.broker(config)
bus.check("hand: the sinks join", bus.joined(config, "archive", "lines"))
bus.worker("cam", config)
bus.check("hand: frames stored", lib.wait_for(lambda: stored("archive") >= 200, 60))
bus.check("hand: camera stopped", bus.stop("cam") == 0)
bus.wait_delivered(60)

rc, out, err = dcbus("sessions", "close", "--wait", "30", "--broker", bus.bus_ep)
bus.check("hand: sessions close --wait exits 0", rc == 0, (rc, out, err))
m = re.search(r"closed session (\S+);", out)
bus.check("hand: it names the session", m is not None, out)
bus.check("hand: it says the sinks closed it", "every sink has closed it" in out, out)
session = check_closed("hand (sink still running)", "hand", data, m and m.group(1))
rc, out, err = dcbus("sessions", "close", "--broker", bus.bus_ep)
bus.check("hand: a second close answers the same session",
          rc == 0 and ("closed session %s;" % session) in out, (rc, out, err))
rc, out, err = dcbus("sessions", "start", "observation", "--broker", bus.bus_ep)
bus.check("hand: no new session while the bus stops", rc == 1 and "stopping" in err, (rc, err))
rc, out, err = dcbus("sessions", "close", "--wait", "soon", "--broker", bus.bus_ep)
bus.check("hand: --wait needs seconds", rc == 2 and "--wait" in err, (rc, err))
rc, out, err = dcbus("sessions", "start", "observation", "--wait", "3", "--broker", bus.bus_ep)
bus.check("hand: --wait goes with close only", rc == 2 and "close" in err, (rc, err))
reply = lib.request(bus.bus_ep, "session_close", {"status": "aborted"})
bus.check("hand: session_close refuses another status", not reply.get("ok") and
          "completed or failed" in reply.get("error", ""), reply)

# The sink killed and started again while the bus is stopping: its READY
# lists the closed session as ended (not as active) and the sink says it
# closed it, so a wait ends.
bus.procs["archive"].send_signal(signal.SIGKILL)
bus.procs["archive"].wait()
os.rename(bus.path("archive.log"), bus.path("archive.first.log"))
joined = 'msg="worker joined" instance=archive'
before = bus.log("broker").count(joined)
bus.worker("archive", config)
bus.check("hand: the restarted sink takes the dead one's place",
          lib.wait_for(lambda: bus.log("broker").count(joined) > before, 30))
rc, out, err = dcbus("sessions", "close", "--wait", "20", "--broker", bus.bus_ep)
bus.check("hand: a sink restarted while stopping says it closed the session",
          rc == 0 and "every sink has closed it" in out, (rc, out, err))
bus.check("hand: still one file, nothing staged again",
          staged(data) == [] and len(session_files(data)) == 1, (staged(data), session_files(data)))

# The broker and the sink start again: the ended session is in the sink's
# READY, and closing it again writes nothing new.
bus.stop("archive")
bus.stop("lines")
bus.stop("broker")
os.rename(bus.path("broker.log"), bus.path("broker.first.log"))
bus.broker(config)
bus.worker("archive", config)
bus.check("hand: the sink joins again",
          bus.wait_log("broker", 'msg="worker joined" instance=archive', 20))
bus.stop("archive")
bus.check("hand: still one file after the restart", len(session_files(data)) == 1,
          session_files(data))

bus.finish()
