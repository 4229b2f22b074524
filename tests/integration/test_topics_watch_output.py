"""test_topics_watch_output.py -- what `dcbus watch` prints, for every kind
of value and every family of topics, and what it does with junk.

The test plays the broker's topics endpoint itself (an XPUB socket, so it
knows when the watchers have subscribed) and publishes crafted messages
to two watchers:

  dcbus watch --json '' --count N    every topic, whole bodies as JSON
  dcbus watch                        the default families, summaries

It checks that

  - every msgpack type comes out as the JSON the help promises: integers in
    full (2^64 - 1 too), floats exact and kept floats (2.0), NaN and
    infinities null, strings escaped, bytes that are not UTF-8 as U+FFFD,
    binary as base64, ext as {ext, data}, keys that are not strings as
    their JSON text, nesting kept; each line is {time, topic, body};
  - messages that are not two frames, or whose body is not one msgpack
    value, are skipped with a note on stderr and not counted: the JSON
    watcher stops by itself after exactly N good messages;
  - the summaries say what matters per family (an error's message and
    details, a task's status and percentage, a session's id and metadata,
    the metrics' counters, an event's data), and the default prefixes
    leave out data.*;
  - a watcher ends cleanly (exit 0) on SIGTERM.
"""

import base64
import json
import math
import os
import signal
import subprocess
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

bus = lib.Bus()
dcbus = os.path.join(bus.bin, "dcbus")
pub = zmq.Context.instance().socket(zmq.XPUB)
pub.setsockopt(zmq.XPUB_VERBOSE, 1)
pub.setsockopt(zmq.LINGER, 0)
pub.bind(bus.topics_ep)


def packb(value):
    return msgpack.packb(value, use_bin_type=True)


def str_bytes(raw):
    """A msgpack str holding `raw` as it is (UTF-8 or not)."""
    return bytes([0xa0 | len(raw)]) + raw


# A map with one of each msgpack type; "bad" is a str that is not UTF-8,
# spliced in by hand since msgpack-python will not write one.
every_type = packb({
    "nil": None, "t": True, "f": False, "neg": -5, "u64": 2**64 - 1, "i64": -2**63,
    "half": 1.5, "third": 1 / 3, "whole": 2.0, "tiny": 1e-300, "nan": math.nan,
    "inf": math.inf, "ninf": -math.inf,
    "text": "h\u00e9llo \"q\" \\ \n\t\x01 \u20ac \U0001f600",
    "bin": b"\x00\xffabc", "ext": msgpack.ExtType(5, b"xyz"),
    "nested": [1, [2, {"k": "v"}], {}], "keys": {1: "int key", -2.5: "float key", None: "nil"},
})
assert every_type[0] == 0xde  # a map16: one more entry goes in its count
count = int.from_bytes(every_type[1:3], "big")
every_type = b"\xde" + (count + 1).to_bytes(2, "big") + every_type[3:] + \
    str_bytes(b"bad") + str_bytes(b"a\xffb\xc3")

good = [
    ("event.TEST.unit", every_type),
    ("error.VALIDATION.processing", packb({
        "error_type": "VALIDATION", "timestamp": 1, "layer_name": "processing",
        "operation": "validate", "message": "required field 'price' is missing",
        "details": {"field": "price", "expected": "present", "got": "missing",
                    "record": {"n": 7, "symbol": "X"}},
        "is_critical": True, "stream": "orderbook", "seq": 42})),
    ("task.RUNNING.ticker-1", packb({
        "id": "ticker-1", "type": "collection", "name": "ticker", "status": "RUNNING",
        "progress": 0.425, "records": 930, "error": None})),
    ("task.FAILED.src-2", packb({
        "id": "src-2", "type": "collection", "name": "src", "status": "FAILED",
        "progress": 0.3, "records": 300, "error": "collect() failed"})),
    ("session.end.observation", packb({
        "id": "observation-1", "type": "observation", "status": "completed", "start": 1,
        "end": 4000001, "duration_s": 4.0, "records": 12, "errors": 0,
        "meta": {"target": "M31", "note": "first light"}})),
    ("metrics", packb({
        "uptime_s": 12.0, "batches_in_flight": 3, "topics_published": 99,
        "topics_dropped": 1, "instances": [
            {"instance": "ticker", "status": "PAUSED", "records_out": 5000},
            {"instance": "csv", "records_out": 4000}]})),
    ("data.prices", packb({
        "v": 1, "stream": "prices", "seq": 9, "session": "s", "source": "ticker", "ts": 1,
        "records": [{"n": 0}, {"n": 1}, {"n": 2}]})),
    ("event.COLLECTION_START.ticker", packb({
        "event_type": "COLLECTION_START", "timestamp": 1, "source": "ticker",
        "data": {"pipeline": "ticks", "records": 0}})),
]
junk = [
    ("one frame", [b"event.JUNK.one"]),
    ("three frames", [b"event.JUNK.three", packb({}), packb({})]),
    ("a body that is not msgpack", [b"event.JUNK.body", b"\xc1"]),
    ("a body with bytes after the value", [b"event.JUNK.trailing", packb({"a": 1}) + b"\x00"]),
    ("a truncated body", [b"event.JUNK.truncated", packb({"a": "long text"})[:-3]]),
]

json_watch = bus.start("json", dcbus, "watch", "--topics", bus.topics_ep, "--json", "",
                       "--count", str(len(good)), "--timeout", "30")
summary_watch = bus.start("summary", dcbus, "watch", "--topics", bus.topics_ep)

# Six subscriptions: '' from the first watcher, the five default prefixes.
subscribed, deadline = set(), time.monotonic() + 10
while len(subscribed) < 6 and time.monotonic() < deadline:
    if pub.poll(100):
        msg = pub.recv()
        if msg[:1] == b"\x01":
            subscribed.add(msg[1:])
bus.check("the watchers subscribe: '' and the default families",
          subscribed == {b"", b"event.", b"error.", b"task.", b"session.", b"metrics"},
          str(sorted(subscribed)))

# Junk before and between the good ones: none may count or stop the watcher.
for i, (topic, body) in enumerate(good):
    if i < len(junk):
        pub.send_multipart(junk[i][1])
    pub.send_multipart([topic.encode(), body])

bus.check("the JSON watcher stops by itself after %d good messages, exit 0" % len(good),
          bus.wait("json", 10) == 0)
time.sleep(0.3)
summary_watch.send_signal(signal.SIGTERM)
bus.check("the summary watcher ends cleanly on SIGTERM", bus.wait("summary", 5) == 0)

# --- JSON ------------------------------------------------------------------
lines = [l for l in bus.log("json").splitlines() if l.startswith("{")]
notes = [l for l in bus.log("json").splitlines() if not l.startswith("{")]
try:
    docs = [json.loads(l) for l in lines]
except ValueError as e:
    docs = []
    bus.check("every JSON line parses", False, str(e))
bus.check("one JSON line per good message, in order",
          [d["topic"] for d in docs] == [t for t, _ in good], str([d["topic"] for d in docs]))
bus.check("each line is {time, topic, body} with a time in µs now",
          all(set(d) == {"time", "topic", "body"} and abs(d["time"] / 1e6 - time.time()) < 60
              for d in docs))
bus.check("each junk message is noted on stderr (%d notes)" % len(notes),
          len([n for n in notes if "ignored" in n]) == len(junk), "\n".join(notes))
body = docs[0]["body"] if docs else {}
expected = {
    "nil": None, "t": True, "f": False, "neg": -5, "u64": 2**64 - 1, "i64": -2**63,
    "half": 1.5, "third": 1 / 3, "whole": 2.0, "tiny": 1e-300, "nan": None, "inf": None,
    "ninf": None, "text": "h\u00e9llo \"q\" \\ \n\t\x01 \u20ac \U0001f600",
    "bin": base64.b64encode(b"\x00\xffabc").decode(),
    "ext": {"ext": 5, "data": base64.b64encode(b"xyz").decode()},
    "nested": [1, [2, {"k": "v"}], {}],
    "keys": {"1": "int key", "-2.5": "float key", "null": "nil"},
    "bad": "a\ufffdb\ufffd",
}
for key, value in expected.items():
    got = body.get(key, "(missing)")
    same = got == value and type(got) is type(value)
    bus.check("JSON of %s: %r" % (key, value), same, "got %r" % (got,))
whole_text = lines[0] if lines else ""
bus.check("a whole float stays a float in the text (2.0, not 2)", '"whole":2.0' in whole_text)
bus.check("control characters are escaped", "\\u0001" in whole_text and "\\n" in whole_text)
data = docs[6]["body"] if len(docs) > 6 else {}
bus.check("data.* bodies come whole (records included)",
          data.get("records") == [{"n": 0}, {"n": 1}, {"n": 2}])

# --- summaries -------------------------------------------------------------
out = bus.log("summary")
# Every line but the notes on stderr is a summary: a value with a line
# break in it must not break the line.
summary_lines = [l for l in out.splitlines() if not l.startswith("dcbus watch: ")]
expected_lines = [
    ("an event without data: its fields, strings quoted and escaped unless one plain word",
     "event.TEST.unit nil=- t=true f=false neg=-5 u64=18446744073709551615 "
     "i64=-9223372036854775808 half=1.5 third=0.333333 whole=2 tiny=1e-300 nan=nan inf=inf "
     "ninf=-inf text=%s bin=<5 bytes> ext={\"ext\":5,\"data\":\"eHl6\"} "
     "nested=[1,[2,{\"k\":\"v\"}],{}] keys={\"1\":\"int key\",\"-2.5\":\"float key\","
     "\"null\":\"nil\"} bad=\"a\\ufffdb\\ufffd\""
     % json.dumps("h\u00e9llo \"q\" \\ \n\t\x01 \u20ac \U0001f600", ensure_ascii=False)),
    ("an error: message, operation, batch, details, criticality",
     "error.VALIDATION.processing \"required field 'price' is missing\" operation=validate "
     "stream=orderbook seq=42 field=price expected=present got=missing CRITICAL"),
    ("a task: type, name, percentage, records",
     "task.RUNNING.ticker-1 collection ticker 42% records=930"),
    ("a failed task: its error", "task.FAILED.src-2 collection src 30% records=300 "
     "error=\"collect() failed\""),
    ("a session: id, status, counts, duration, metadata",
     "session.end.observation id=observation-1 status=completed records=12 errors=0 "
     "duration=4.0s target=M31 note=\"first light\""),
    ("the metrics: counters and each instance",
     "metrics up=12s in_flight=3 published=99 dropped=1 | ticker PAUSED out=5000 | csv out=4000"),
    ("a run event: its data", "event.COLLECTION_START.ticker source=ticker pipeline=ticks "
     "records=0"),
]
for what, text in expected_lines:
    bus.check("summary of %s" % what, any(l[13:] == text for l in summary_lines), text)
bus.check("every summary line starts with the time of day (HH:MM:SS.mmm)",
          all(len(l) > 13 and l[2] == ":" and l[5] == ":" and l[8] == "." and l[12] == " "
              for l in summary_lines))
bus.check("the default prefixes leave out data.*", not any(" data." in l for l in summary_lines))
bus.check("the summary watcher printed one line per good message of its families",
          len(summary_lines) == len(good) - 1, "%d lines" % len(summary_lines))
bus.finish()
