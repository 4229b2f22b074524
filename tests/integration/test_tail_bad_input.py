"""test_tail_bad_input.py -- tail reports bad lines and goes on; glob
patterns, plain lines split by a regex, and files created later.

Two tail instances into one csv sink:
  - `tj` (JSON lines) follows in/*.jsonl, where a.jsonl holds good lines
    between an invalid JSON line, a line that is not UTF-8, a line of 100 MB
    (over max_line, 1 MiB by default), two JSON values on one line and a
    nested object (read through records_from_json), and c.jsonl is created
    after the start (found through inotify);
  - `tp` (plain lines) follows in/b.log with regex
    `^(?<level>[A-Z]+) (?<msg>.*)$` and path_field, where one line does not
    match;
  - `te` (plain lines, start_at: end, the default) follows old.log, which
    has four lines before the start, the last without its newline yet; the
    writer then finishes that line and adds two.

Checks: every good line is a row, with its fields; each bad line is one
error on error.VALIDATION.collection whose details name the file and the
offset; the tail worker's peak memory stays far below the 100 MB line
(it is skipped, never held); neither worker exits.
"""

import csv
import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

BIG = 100 * 1024 * 1024

bus = lib.Bus()
src = bus.path("in")
os.makedirs(src)
with open(os.path.join(src, "a.jsonl"), "wb") as f:
    f.write(b'{"n": 0, "s": "caf\\u00e9 \xe2\x82\xac"}\n')
    f.write(b'{"n": 1, "s": oops}\n')                        # invalid JSON
    f.write(b'{"n": 1, "s": "ok"}\n')
    f.write(b'{"n": 98, "s": "\xff\xfe"}\n')                 # not UTF-8
    f.write(b'{"n": 2, "s": "ok"}\n')
    chunk = b"x" * (1024 * 1024)
    f.write(b'{"n": 97, "s": "')
    for _ in range(BIG // len(chunk)):                       # 100 MB line
        f.write(chunk)
    f.write(b'"}\n')
    f.write(b'{"n": 3, "s": "ok"}\n')
    f.write(b'{"n": 96} {"n": 95}\n')                        # two values
    f.write(b'{"n": 4, "m": {"a": [1, 2]}, "s": "nested"}\n')
with open(os.path.join(src, "b.log"), "wb") as f:
    f.write(b"INFO started\nWARN disk almost full\nthis line does not match\nERROR failed\n")
with open(os.path.join(src, "old.log"), "wb") as f:
    f.write(b"old 1\nold 2\nold 3\nold 4, its newline not yet written")

config = bus.write("c.yaml", bus.config_head() + """
workers:
  tj:  {plugin: tail, paths: ["%s/*.jsonl"], start_at: beginning, state_dir: %s, rescan_ms: 200}
  tp:  {plugin: tail, paths: %s/b.log, format: plain, regex: "^(?<level>[A-Z]+) (?<msg>.*)$",
        path_field: file, stream: plain, start_at: beginning, state_dir: %s}
  te:  {plugin: tail, paths: %s/old.log, format: plain, stream: end, state_dir: %s}
  csv: {plugin: csv, dir: %s}
pipelines:
  j: {from: tj, to: [csv]}
  p: {from: tp, to: [csv]}
  e: {from: te, to: [csv]}
""" % (src, bus.path("state"), src, bus.path("state"), src, bus.path("state"), bus.path("csv")))

sub = zmq.Context.instance().socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"error.")
bus.broker(config)
sub.connect(bus.topics_ep)
bus.worker("csv", config)
bus.wait_log("broker", 'msg="worker joined" instance=csv', 10)
time.sleep(0.3)  # the subscription reaches the broker
bus.worker("tj", config)
bus.worker("tp", config)
bus.worker("te", config)
bus.wait_log("tj", "file_added", 10)
with open(os.path.join(src, "c.jsonl"), "w") as f:
    f.write('{"n": 5, "s": "later"}\n')
bus.wait_log("te", "file_added", 10)
with open(os.path.join(src, "old.log"), "a") as f:
    f.write("\nnew 1\nnew 2\n")


def rows(stream):
    out = []
    for root, _, files in os.walk(bus.path("csv")):
        if stream + ".csv" in files:
            with open(os.path.join(root, stream + ".csv"), newline="") as f:
                out += list(csv.DictReader(f))
    return out


errors = []
deadline = time.monotonic() + 30
while time.monotonic() < deadline and (len(rows("lines")) < 6 or len(rows("plain")) < 3
                                       or len(rows("end")) < 2 or len(errors) < 5):
    if sub.poll(100):
        topic, body = sub.recv_multipart()
        errors.append((topic.decode(), msgpack.unpackb(body, raw=False)))

peak_kb = 0
with open("/proc/%d/status" % bus.procs["tj"].pid) as f:
    for line in f:
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])

lines = rows("lines")
bus.check("every good JSON line is a row", sorted(int(r["n"]) for r in lines) == [0, 1, 2, 3, 4, 5],
          str(sorted(r["n"] for r in lines)))
by_n = {int(r["n"]): r for r in lines}
bus.check("escapes and UTF-8 decoded", by_n.get(0, {}).get("s") == "caf\u00e9 \u20ac",
          repr(by_n.get(0, {}).get("s")))
bus.check("a nested object through records_from_json", by_n.get(4, {}).get("s") == "nested")
plain = rows("plain")
bus.check("plain lines split by the regex's named groups",
          [(r["level"], r["msg"]) for r in plain] ==
          [("INFO", "started"), ("WARN", "disk almost full"), ("ERROR", "failed")],
          str(plain))
bus.check("path_field names the file", all(r["file"].endswith("/b.log") for r in plain))
end = [r["line"] for r in rows("end")]
bus.check("start_at: end skips the complete lines that were there, and takes the one being "
          "written whole", end == ["old 4, its newline not yet written", "new 1", "new 2"],
          str(end))

reasons = [e["message"] for _, e in errors]
bus.check("five bad lines, five errors", len(errors) == 5, "\n    ".join(reasons))


def has(name, text):
    return any(t == "error.VALIDATION.collection" and e["message"].startswith(os.path.join(src, name))
               and text in e["message"] for t, e in errors)


bus.check("invalid JSON reported on error.VALIDATION.collection", has("a.jsonl", "column 15"))
bus.check("invalid UTF-8 reported", has("a.jsonl", "invalid UTF-8"))
bus.check("the 100 MB line reported", has("a.jsonl", "longer than max_line"))
bus.check("two values on a line reported", has("a.jsonl", "more than one JSON value"))
bus.check("a line the regex does not match reported", has("b.log", "does not match"))
details = [e.get("details") or {} for _, e in errors]
bus.check("details name the file and the offset",
          all(d.get("file", "").startswith(src) and isinstance(d.get("offset"), int)
              for d in details), str(details[:2]))
bus.check("the 100 MB line was not held in memory (peak %d MB)" % (peak_kb // 1024),
          0 < peak_kb < 40 * 1024)
bus.check("the tails still run", all(bus.wait(n, 0) is None for n in ("tj", "tp", "te")))
bus.finish()
