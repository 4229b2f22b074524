"""test_catalog_cli.py -- `dcbus catalog` on a data directory python3-asdf wrote.

Files as the asdf sink lays them out (a failed alignment, two observations
of M targets and one of NGC7000, two idle sessions, one of them old), plus
a half-written file.  Checks:
  - rebuild indexes the good files, names the half-written one on stderr
    with the reason, and exits 0;
  - the database holds the rows (read with Python's sqlite3), the frame
    counts per camera included;
  - query answers the seed's questions and prints the file paths: failed
    alignment sessions; observations of targets starting with M, newest
    first; --limit, --json (every line a JSON object), --paths;
  - prune --dry-run lists the old idle file and removes nothing; prune
    removes it and its row; the recent idle session stays;
  - usage errors exit 2, a missing catalog exits 1.
"""

import datetime
import json
import os
import sqlite3
import subprocess
import sys

import asdf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

bus = lib.Bus()
data = bus.path("data")
dcbus = os.path.join(bus.bin, "dcbus")


def write(rel, sid, typ, status, start, end, frames, errors=0, **meta):
    path = os.path.join(data, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    m = dict(session_id=sid, session_type=typ, status=status, start_time=start, end_time=end,
             duration_seconds=60.0, **meta)
    tree = {"meta": m, "summary": {"frames": frames, "records": 10, "errors": errors,
                                   "warnings": 0}}
    if frames:
        tree["cameras"] = {c: {"frames": np.zeros((n, 4, 4), dtype=np.uint16)}
                           for c, n in frames.items()}
    asdf.AsdfFile(tree).write_to(path)
    return path


old = write("2025/12/14/idle_20251214_180000.asdf", "idle-old", "idle", "completed",
            "2025-12-14T18:00:00Z", "2025-12-14T20:30:00Z", {})
align = write("2025/12/14/alignment_20251214_203000.asdf", "align-1", "alignment", "failed",
              "2025-12-14T20:30:00Z", "2025-12-14T20:45:00Z", {"spotter": 2}, errors=1)
m31 = write("2025/12/14/observation_m31_20251214_210000.asdf", "obs-m31", "observation",
            "completed", "2025-12-14T21:00:00Z", "2025-12-14T23:00:00Z", {"main": 5, "spotter": 1},
            target="M31")
m42 = write("2025/12/15/observation_m42_20251215_010000.asdf", "obs-m42", "observation",
            "completed", "2025-12-15T01:00:00Z", "2025-12-15T02:00:00Z", {"main": 3}, target="M42")
write("2025/12/15/observation_ngc7000_20251215_030000.asdf", "obs-ngc", "observation",
      "completed", "2025-12-15T03:00:00Z", "2025-12-15T04:00:00Z", {"main": 1}, target="NGC7000")
now = datetime.datetime.now(datetime.timezone.utc)
recent = write("recent/idle_recent.asdf", "idle-recent", "idle", "completed",
               (now - datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
               (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), {})
half = os.path.join(data, "2025/12/15/idle_20251215_050000.asdf")
with open(m42, "rb") as f:
    text = f.read()
with open(half, "wb") as f:
    f.write(text[:text.index(b"summary:")])


def run(*args):
    p = subprocess.run([dcbus, "catalog"] + list(args), capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


rc, out, err = run("rebuild", data)
bus.check("rebuild exits 0", rc == 0, err.strip())
bus.check("rebuild: 6 sessions, 1 file skipped", "6 sessions, 1 file skipped" in out, out.strip())
bus.check("the half-written file is named with the reason",
          half in err and "half-written or truncated" in err, err.strip())

db = sqlite3.connect(os.path.join(data, "catalog", "catalog.sqlite"))
rows = dict(db.execute("SELECT session_id, path FROM sessions").fetchall())
bus.check("the database holds the six sessions", sorted(rows) == sorted(
    ["idle-old", "align-1", "obs-m31", "obs-m42", "obs-ngc", "idle-recent"]), sorted(rows))
frames = db.execute("SELECT camera, count FROM session_frames WHERE session_id = 'obs-m31' "
                    "ORDER BY camera").fetchall()
bus.check("frame counts per camera", frames == [("main", 5), ("spotter", 1)], frames)
db.close()

rc, out, _ = run("query", data, "--type", "alignment", "--status", "failed")
lines = out.splitlines()
bus.check("failed alignment sessions: one, with its path",
          rc == 0 and len(lines) == 3 and lines[1].endswith(align) and "(1 session)" in lines[2],
          out)
rc, out, _ = run("query", data, "--type", "observation", "--target-prefix", "M", "--sort",
                 "-start", "--paths")
bus.check("observations of M targets, newest first", out.splitlines() == [m42, m31], out)
rc, out, _ = run("query", data, "--type", "observation", "--sort", "-start", "--limit", "1",
                 "--json")
objs = [json.loads(line) for line in out.splitlines()]
bus.check("--limit 1 --json: the newest observation as JSON",
          len(objs) == 1 and objs[0]["session_id"] == "obs-ngc"
          and objs[0]["meta"]["target"] == "NGC7000" and objs[0]["frames"] == {"main": 1},
          out)
rc, out, _ = run("query", data, "--with-errors", "--paths")
bus.check("--with-errors", out.splitlines() == [align], out)
rc, out, _ = run("query", data, "--since", "2025-12-15", "--until", "2025-12-15T02:00:00Z",
                 "--paths")
bus.check("--since/--until", out.splitlines() == [m42], out)

rc, out, err = run("prune", data, "--type", "idle", "--older-than", "7d", "--dry-run")
bus.check("prune --dry-run lists the old idle session",
          rc == 0 and ("would remove %s" % old) in out and "1 file would be removed" in out
          and recent not in out, out)
bus.check("...and removes nothing", os.path.exists(old))
rc, out, err = run("prune", data, "--type", "idle", "--older-than", "7d")
bus.check("prune removes the old idle file", rc == 0 and not os.path.exists(old), out)
bus.check("...keeps the recent one, the other types and the unreadable file",
          all(os.path.exists(p) for p in (recent, align, m31, m42, half)))
rc, out, _ = run("query", data, "--type", "idle", "--paths")
bus.check("...and its row is gone", out.splitlines() == [recent], out)

rc, _, err = run("query", data, "--sort", "end")
bus.check("a bad --sort is a usage error (2)", rc == 2, err.strip())
rc, _, err = run("prune", data)
bus.check("prune without --older-than is a usage error (2)", rc == 2, err.strip())
rc, _, err = run("query", bus.path("nowhere"))
bus.check("no catalog: exit 1 with a hint", rc == 1 and "catalog rebuild" in err, err.strip())
bus.finish()
