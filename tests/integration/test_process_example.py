"""test_process_example.py -- examples/process/process.py, seed 000's
process side, end to end against config/spray.yaml.

config/spray.yaml is read and given this test's endpoints, directory and
a free port (nothing else changed): http-listen -> runs.  The example
process then runs twice, as a user would run it:
  - run 1 of sequence S1 (data/sequences/S1.yaml exists): 240 spray events
    and an update of every 4th; it must exit 0, having printed the
    session.start.run and session.end.run notifications of its run and
    event.* ones; the run file data/runs/S1_*.yaml must say completed,
    with the metadata the process gave, the sequence's snapshot and 240
    events; spray_history.csv must hold each event once, the updated ones
    at version 1 with their thickness; `dcbus query runs --filter
    sequence_id=S1` must return the 240;
  - run 2 of sequence S2, ended as failed: its run file says failed.

With DCBUS_SPRAY_DUAL=1 and a PostgreSQL server in DATABASE_URL (what
test_spray_dual_write.sh gives it) the config keeps its `pg` worker and
the pipeline writes to both, `to: [runs, pg]`: the spray_events table must
then hold the same events as spray_history.csv, each once in its latest
version, and the sessions table each run with its status.
"""

import csv
import glob
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

import yaml  # noqa: E402

EVENTS, EVERY = 240, 4




bus = lib.Bus()
root = os.environ.get("DCBUS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
with open(os.path.join(root, "config", "spray.yaml")) as f:
    spray = yaml.safe_load(f)
port = lib.free_port()
data = bus.path("data")
spray["broker"] = {"bus": bus.bus_ep, "topics": bus.topics_ep, "heartbeat_ms": 200,
                   "spool": bus.path("spool")}
spray["plugins_path"] = [bus.plugins]
spray["workers"]["process"]["port"] = port
spray["workers"]["runs"]["dir"] = data
dual = os.environ.get("DCBUS_SPRAY_DUAL") == "1"
if dual:  # the same config, both backends (seed 000's "csv or timescaledb", here both)
    spray["workers"]["pg"]["dsn"] = os.environ["DATABASE_URL"]
    spray["pipelines"]["spray"]["to"] = ["runs", "pg"]
else:  # no PostgreSQL here: test_spray_dual_write.sh runs this with one
    del spray["workers"]["pg"]
config = bus.write("spray.yaml", yaml.safe_dump(spray))
os.makedirs(os.path.join(data, "sequences"))
sequence = {"name": "coat-A", "steps": [{"move": [0, 10]}, {"spray": {"pressure": 2.5}}]}
with open(os.path.join(data, "sequences", "S1.yaml"), "w") as f:
    yaml.safe_dump(sequence, f)

bus.broker(config)
bus.worker("runs", config)
bus.worker("process", config)
if dual:
    bus.worker("pg", config)
bus.check("the workers join", bus.wait_log("broker", "instance=process", 15) and
          bus.wait_log("broker", "instance=runs", 15) and
          (not dual or bus.wait_log("broker", "instance=pg", 30)))
example = os.path.join(root, "examples", "process", "process.py")


def process(*args):
    out = subprocess.run(["/usr/bin/python3", example, "--bus", bus.bus_ep, "--topics",
                          bus.topics_ep, "--url", "http://127.0.0.1:%d/records" % port] +
                         list(args), capture_output=True, text=True, timeout=60)
    print("\n".join("    | " + line for line in (out.stdout + out.stderr).splitlines()[-8:]))
    return out


def wait_for(cond, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def run_file(sequence, status):
    def done():
        files = glob.glob(os.path.join(data, "runs", sequence + "_*.yaml"))
        if len(files) != 1:
            return None
        with open(files[0]) as f:
            run = yaml.safe_load(f)
        return run if run.get("status") == status else None
    return done


out = process("--sequence", "S1", "--operator", "kim", "--events", str(EVENTS),
              "--update-every", str(EVERY))
bus.check("the example process runs S1 and exits 0", out.returncode == 0, out.stderr)
run_id = next((line.split()[1] for line in out.stdout.splitlines()
               if line.startswith("run ") and "started" in line), None)
bus.check("it is told of its run's start and end (session.start.run, session.end.run)",
          "notified: session.start.run id=%s" % run_id in out.stdout and
          "notified: session.end.run id=%s type=run status=completed" % run_id in out.stdout)
bus.check("... and of events (event.*)", "notified: event.SESSION_START" in out.stdout)
bus.check("the run file says completed", wait_for(run_file("S1", "completed")))
run = run_file("S1", "completed")() or {}
bus.check("... with the process's metadata", run.get("run_id") == run_id and
          run.get("metadata", {}).get("operator") == "kim" and
          run["metadata"].get("parameters") == {"speed_mm_s": 12.5, "passes": 3}, run)
bus.check("... the sequence as it was, and the events", run.get("sequence") == sequence and
          run.get("events", {}).get("total") == EVENTS, run.get("events"))

with open(os.path.join(data, "runs", "spray_history.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
by_id = {r["event_id"]: r for r in rows}
updated = {"%s/%d" % (run_id, i) for i in range(0, EVENTS, EVERY)}
bus.check("spray_history.csv holds each event once", len(rows) == len(by_id) == EVENTS,
          len(rows))
bus.check("... the updated ones in their latest version", all(
    (r["version"] == "1" and r["thickness_um"] != "") == (i in updated)
    for i, r in by_id.items()), [r for r in rows if r["event_id"] in updated][:1])
q = subprocess.run([os.path.join(bus.bin, "dcbus"), "query", "runs", "--config", config,
                    "--filter", "sequence_id=S1", "--json"], capture_output=True, text=True,
                   timeout=30)
bus.check("dcbus query --filter sequence_id=S1 returns them",
          q.returncode == 0 and len(q.stdout.splitlines()) == EVENTS, q.stderr)

out = process("--sequence", "S2", "--events", "30", "--fail", "--quiet")
bus.check("a run ended as failed: exit 0, its run file says failed",
          out.returncode == 0 and wait_for(run_file("S2", "failed")), out.stderr)


def psql(query):
    psql_bin = os.path.join(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"), "psql")
    out = subprocess.run([psql_bin, "-XAtq", "-F", ",", "-d", os.environ["DATABASE_URL"], "-c",
                          query], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines() if out.returncode == 0 else None


def run_status(run):
    rows = psql("SELECT status FROM data_collection_sessions WHERE session_id = '%s'" % run)
    return rows[0] if rows else None


def number(text):  # a cell or a column as a number, None when empty
    return float(text) if text != "" else None


if dual:
    run2 = next((line.split()[1] for line in out.stdout.splitlines()
                 if line.startswith("run ") and "started" in line), None)
    bus.check("postgres: the sessions table says each run's status",
              wait_for(lambda: run_status(run_id) == "completed" and
                       run_status(run2) == "failed"),
              psql("SELECT session_id, type, status, end_time FROM data_collection_sessions"))
    with open(os.path.join(data, "runs", "spray_history.csv"), newline="") as f:
        in_csv = sorted((r["event_id"], int(r["version"]), number(r["thickness_um"]))
                        for r in csv.DictReader(f))
    table = psql("SELECT event_id, version, coalesce(thickness_um::text, '') FROM spray_events "
                 "ORDER BY event_id") or []
    in_pg = sorted((e, int(v), number(t)) for e, v, t in (line.split(",") for line in table))
    bus.check("postgres: spray_events holds the same %d events as spray_history.csv, each "
              "once in its latest version" % len(in_csv),
              len(in_csv) == EVENTS + 30 and in_pg == in_csv,
              "%d rows in postgres, %d in the csv; first difference: %s" % (
                  len(in_pg), len(in_csv),
                  next((p for p in zip(in_pg, in_csv) if p[0] != p[1]), None)))
bus.finish()
