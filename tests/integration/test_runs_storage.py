"""test_runs_storage.py -- the runs sink (seed 000): a run file per run,
spray events saved and updated in one CSV file, queries by sequence and of
the runs.

A mock-source replays a JSON-lines file of events into the runs sink while
a session of type run is active: saves, updates (some of which outgrow
their row's room), an update of an id never saved, an event without an
id, a bad op.  Then the test checks, with Python's csv and yaml:
  - spray_history.csv holds every event once, in its latest version,
    and the refused ones not at all (their errors are counted);
  - the run file data/runs/S1_<start>.yaml is valid YAML with the run's
    metadata, the snapshot of data/sequences/S1.yaml, its status, end,
    duration and the events by type;
  - `dcbus query --filter sequence_id=S1` returns S1's events, sorted and
    limited; `dcbus query --runs` lists the runs with their status;
  - a run whose sequence id is "../../etc" gets a run file inside
    data/runs and an error; one whose definition is not YAML gets
    sequence_error;
  - kill -9 of the runs worker during a burst of updates, and of the
    broker: the file still ends exact, each event once.
"""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

import yaml  # noqa: E402

bus = lib.Bus()
data = bus.path("data")
os.makedirs(os.path.join(data, "sequences"))
sequence = {"name": "coat-A", "steps": [{"move": [0, 10]}, {"spray": {"pressure": 2.5}}]}
with open(os.path.join(data, "sequences", "S1.yaml"), "w") as f:
    yaml.safe_dump(sequence, f)
with open(os.path.join(data, "sequences", "S2.yaml"), "w") as f:
    f.write("steps: [unclosed\n  - : :\n")


def write_events(name, events):
    with open(bus.path(name), "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    return bus.path(name)


def event(i, seq, version=0, pad=""):
    return {"event_id": "e%d" % i, "sequence_id": seq,
            "event_type": ("spray", "move", "pause")[i % 3], "nozzle": i % 4,
            "pressure": 1.5 + version, "note": "v%d, \"q\"%s" % (version, pad)}


def expected_after(events):
    """The latest version of each event (replace mode), as the CSV cells."""
    latest = {}
    for e in events:
        if "event_id" not in e or e.get("op") not in (None, "save", "update"):
            continue
        latest[e["event_id"]] = {k: v for k, v in e.items() if k != "op"}
    return latest


def cell(v):
    return v if isinstance(v, str) else json.dumps(v)


def read_events():
    with open(os.path.join(data, "runs", "spray_history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def request(op, **args):
    return lib.request(bus.bus_ep, op, args, timeout_s=10)


def dcbus(*args):
    out = subprocess.run([os.path.join(bus.bin, "dcbus")] + list(args), capture_output=True,
                         text=True, timeout=30)
    return out.returncode, out.stdout, out.stderr


def wait_for(cond, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def source(name, events, batch):
    """A mock-source instance replaying `events`, and its pipeline."""
    path = write_events(name + ".jsonl", events)
    return ("  %s: {plugin: mock-source, json_lines: %s, batch: %d, stream: %s}\n" %
            (name, path, batch, name), "  %s: {from: %s, to: [runs]}\n" % (name, name))


# The events of run S1: 300 saves, then updates of a fifth of them (every
# fifth update grows past its row's room), an update of an id never saved,
# an event without an id, one with a bad op.
s1 = [event(i, "S1") for i in range(300)]
s1 += [event(i, "S1", 1, "x" * (200 if i % 25 == 0 else 0)) for i in range(0, 300, 5)]
s1 += [dict(event(900, "S1", 2), op="update")]
s1 += [{"sequence_id": "S1", "note": "no id"}, dict(event(901, "S1"), op="delete")]

# The burst of run S3 (below): 600 events updated 5 times each.
burst = [event(i, "S3", v) for v in range(6) for i in range(1000, 1600)]
w1, p1 = source("s1", s1, 10)
w3, p3 = source("s3", burst, 20)
config = bus.write("runs.yaml", bus.config_head() + "workers:\n" + w1 + w3 +
                   "  runs: {plugin: runs, dir: %s}\npipelines:\n" % data + p1 + p3)
bus.broker(config)
bus.start("watch", os.path.join(bus.bin, "dcbus"), "watch", "--config", config, "error.",
          "metrics", "--json")
bus.check("dcbus watch is subscribed", bus.wait_log("watch", '"topic":"metrics"', 15))
bus.worker("runs", config)
bus.check("the runs worker joins", bus.wait_log("broker", 'instance=runs', 15))
reply = request("session_start", type="run", meta={"sequence_id": "S1", "operator": "kim",
                                                   "parameters": {"speed": 1.5}})
run1 = reply["result"]["id"]
bus.worker("s1", config)
bus.check("the events are replayed", bus.wait("s1", 30) == 0)
bus.check("... and delivered", bus.wait_delivered(30)[0])
reply = request("session_end", status="completed")
runfiles = lambda: glob.glob(os.path.join(data, "runs", "S1_*.yaml"))  # noqa: E731
bus.check("the run file is written", wait_for(lambda: runfiles() and yaml.safe_load(
    open(runfiles()[0])).get("status") == "completed"), runfiles())

rows = read_events()
want = expected_after(s1)
by_id = {r["event_id"]: r for r in rows}
bus.check("each event once", len(rows) == len(by_id) == len(want), (len(rows), len(want)))
bus.check("each in its latest version", all(
    all(by_id[i][k] == cell(v) for k, v in e.items()) for i, e in want.items()),
    [i for i, e in want.items() if any(by_id.get(i, {}).get(k) != cell(v) for k, v in e.items())][:3])
bus.check("the events carry their run", all(r["session_id"] == run1 for r in rows))
bus.check("the extra cell is empty JSON", all(json.loads(r["extra"]) == {} for r in rows))
bus.check("the event without an id and the bad op are not stored",
          "901" not in by_id and "e901" not in by_id)

def reported(text):
    return lambda: any(text in line for line in bus.log("watch").splitlines()
                       if '"topic":"error.VALIDATION' in line)


bus.check("the refused events are reported on error.VALIDATION",
          wait_for(reported("an event without an id")) and
          wait_for(reported("must be save or update")))

run = yaml.safe_load(open(runfiles()[0]))
bus.check("the run file says who and what", run["run_id"] == run1 and run["sequence_id"] == "S1"
          and run["metadata"] == {"sequence_id": "S1", "operator": "kim",
                                  "parameters": {"speed": 1.5}}, run)
bus.check("... with the sequence definition as it was", run.get("sequence") == sequence)
types = {}
for e in want.values():
    types[e["event_type"]] = types.get(e["event_type"], 0) + 1
bus.check("... and the events by type", run["events"] == {"total": len(want), "by_type": types},
          run["events"])
bus.check("... its end and duration", run["end_time"] > run["start_time"] and
          run["duration_seconds"] > 0)

rc, out, err = dcbus("query", "runs", "--config", config, "--filter", "sequence_id=S1",
                     "--filter", "event_type=spray", "--sort", "nozzle", "--desc", "--limit",
                     "5", "--json")
got = [json.loads(line) for line in out.splitlines()]
bus.check("a query by sequence answers, sorted and limited", rc == 0 and len(got) == 5 and
          all(g["event_type"] == "spray" for g in got) and
          [g["nozzle"] for g in got] == sorted([g["nozzle"] for g in got], reverse=True),
          (rc, err, got[:2]))
rc, out, err = dcbus("query", "runs", "--config", config, "--runs", "--json")
listed = [json.loads(line) for line in out.splitlines()]
bus.check("--runs lists the run with its status", rc == 0 and any(
    r["run_id"] == run1 and r["status"] == "completed" for r in listed), (rc, err, listed))
rc, out, err = dcbus("query", "runs", "--config", config, "--filter", "no_such=1")
bus.check("a filter on no column is refused", rc != 0 and "no column" in out + err, out + err)

# Bad sequence ids and definitions.
for seq in ("../../etc", "S2"):
    request("session_start", type="run", meta={"sequence_id": seq})
    request("session_end", status="failed")
bus.check("a run of sequence ../../etc is written inside data/runs, its name encoded",
          wait_for(lambda: glob.glob(os.path.join(data, "runs", "%2E.%2F..%2Fetc_*.yaml"))),
          os.listdir(os.path.join(data, "runs")))
bus.check("nothing is written outside data", not os.path.exists(bus.path("etc")) and
          not glob.glob(os.path.join(bus.dir, "*.yaml.tmp")))
bus.check("its sequence id is reported", wait_for(reported("is not a plain name")))
s2 = lambda: glob.glob(os.path.join(data, "runs", "S2_*.yaml"))  # noqa: E731
bus.check("a sequence that is not YAML gives sequence_error", wait_for(
    lambda: s2() and "sequence_error" in (yaml.safe_load(open(s2()[0])) or {})), s2())

# kill -9 of the runs worker during a burst of updates, then of the broker.
request("session_start", type="run", meta={"sequence_id": "S3"})
bus.worker("s3", config)
n3 = lambda: sum(1 for r in read_events() if r["sequence_id"] == "S3")  # noqa: E731
bus.check("the burst reaches the file", wait_for(lambda: n3() > 100))
bus.procs["runs"].send_signal(signal.SIGKILL)
bus.procs["runs"].wait()
bus.worker("runs", config)
bus.check("the burst goes on after the worker's restart", wait_for(lambda: n3() >= 600))
bus.procs["broker"].send_signal(signal.SIGKILL)
bus.procs["broker"].wait()
bus.broker(config)
bus.check("the burst ends", bus.wait("s3", 60) == 0)
bus.check("... and is delivered", bus.wait_delivered(60)[0])
rows = read_events()
s3 = [r for r in rows if r["sequence_id"] == "S3"]
want3 = expected_after(burst)
bus.check("after the kills each event of the burst is there once", len(s3) == len(want3) and
          len({r["event_id"] for r in s3}) == len(want3), (len(s3), len(want3)))
bus.check("... in its last version", all(r["pressure"] == cell(want3[r["event_id"]]["pressure"])
                                         for r in s3))
bus.check("... and the events before it are untouched",
          len([r for r in rows if r["sequence_id"] == "S1"]) == len(want))
bus.finish()
