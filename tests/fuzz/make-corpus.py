#!/usr/bin/python3
"""make-corpus.py -- writes the seed corpus of each fuzz target.

The seeds are a few good inputs per target, each reaching a different part
of its parser, for libFuzzer to mutate: the fuzzer finds the bad inputs by
itself, faster from good ones than from nothing.  Run it after changing the
wire format, the config schema or the JSON records take, then commit corpus/ (the files are small):

    /usr/bin/python3 tests/fuzz/make-corpus.py

It needs Debian's python3-msgpack, which /usr/bin/python3 has.
"""
import os
import shutil
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
REPO = os.path.dirname(os.path.dirname(HERE))

pack = msgpack.packb


def envelope(records, stream="prices", seq=7, session="idle-1", source="ticker",
             ts=1700000000000000, records_last=True):
    """An envelope with its fields in the writers' order (records last) or
    not; a record given as bytes is taken as already encoded."""
    fields = [("v", 1), ("stream", stream), ("seq", seq), ("session", session),
              ("source", source), ("ts", ts)]
    body = b"".join(pack(k) + pack(v) for k, v in fields)
    encoded = [r if isinstance(r, bytes) else pack(r) for r in records]
    recs = pack("records") + msgpack.Packer().pack_array_header(len(encoded))
    recs += b"".join(encoded)
    head = msgpack.Packer().pack_map_header(len(fields) + 1)
    return head + (body + recs if records_last else recs + body)


TICK = {"symbol": "BTC_USDT", "price": 42000.5, "ts": 1700000000000001, "qty": 3}
EVERY_TYPE = {
    "nil": None, "t": True, "f": False, "small": 5, "neg": -3, "i16": -300,
    "i64": -(1 << 40), "u64": (1 << 64) - 1, "f64": 1.5, "str": "x" * 40,
    "bin": b"\x00\x01\x02", "list": [1, "a", [2.5]], "map": {"inner": {"deep": 1}},
    "ext": msgpack.ExtType(1, b"abcd"),
}


def envelope_seeds():
    float32 = msgpack.Packer(use_single_float=True).pack({"f32": 0.25})
    return {
        "ticks": envelope([TICK, dict(TICK, price=42001.0)]),
        "every-type": envelope([EVERY_TYPE]),
        "empty-batch": envelope([]),
        "records-first": envelope([TICK], records_last=False),
        "float32-record": envelope([float32]),
        "big-seq": envelope([TICK], seq=(1 << 64) - 1, ts=-1),
        "not-a-map-record": envelope([[1, 2], "str"]),
    }


def frames(*parts):
    """The frames_t input of fuzz_frames.c: a count, length-prefixed frames,
    then the last frame as the rest."""
    out = bytes([len(parts) - 1])
    for p in parts[:-1]:
        out += struct.pack(">H", len(p)) + p
    return out + parts[-1]


def frames_seeds():
    def msg(cmd, body):
        return frames(b"DCB1", cmd.encode(), pack(body))
    return {
        "hello": msg("HELLO", {"role": "storage", "instance": "csv", "plugin": "csv",
                               "replica": 0, "abi": 2 << 16, "credit": 16, "pid": 42,
                               "version": "0.1.0"}),
        "ready": msg("READY", {"heartbeat_ms": 1000, "credit": 16, "session": "idle-1",
                               "session_type": "idle"}),
        "data": frames(b"DCB1", b"DATA", envelope([TICK])),
        "ack": msg("ACK", {"stream": "prices", "seq": 7}),
        "nack": msg("NACK", {"stream": "prices", "seq": 7, "retry": True,
                             "error": "disk full"}),
        "credit": msg("CREDIT", {"credit": 4}),
        "heartbeat": msg("HEARTBEAT", {}),
        "event": msg("EVENT", {"event_type": "COLLECTION_START", "timestamp": 1,
                               "data": {"records": 10}}),
        "error": msg("ERROR", {"code": "refused", "message": "no such instance"}),
        "task": msg("TASK", {"progress": 0.5, "records": 100}),
        "request": msg("REQUEST", {"id": 1, "op": "stats"}),
        "reply": msg("REPLY", {"id": 1, "ok": False, "error": "unknown op"}),
        "control": msg("CONTROL", {"action": "pause"}),
        "bye": msg("BYE", {}),
        "old-version": frames(b"DCB0", b"HEARTBEAT", pack({})),
        "four-frames": frames(b"DCB1", b"ACK", pack({}), b"extra"),
    }


CONFIG_ENV = """\
broker:
  bus: ${FUZZ_SET}
  topics: "${FUZZ_EMPTY:-ipc://run/topics}"
  spool: '$${literal}/pa$word'
  heartbeat_ms: 100
  heartbeat_timeout_ms: 1000
  log_level: warn
  max_attempts: 3
  session_rotate_s: 60
plugins_path: ${FUZZ_UNSET:-build/plugins}
workers:
  src: {plugin: ticker, rate: 1.5e3, on: yes, list: [1, -2, +3], deep: {a: {b: [x]}}}
  sink:
    plugin: csv
    replicas: 3
    "quoted.key": !!str 10
pipelines:
  p: {from: src, to: sink}
error_handlers: sink
"""


def config_seeds():
    seeds = {"env-and-types": CONFIG_ENV.encode()}
    for name, path in [("demo", "config/demo.yaml"),
                       ("full", "tests/unit/data/config_full.yaml")]:
        with open(os.path.join(REPO, path), "rb") as f:
            # fuzz_config.c sets FUZZ_SET; the test's own variable is unset here.
            seeds[name] = f.read().replace(b"DCBUS_TEST_DSN", b"FUZZ_SET")
    seeds["refused-anchor"] = b"workers: &w {a: {plugin: x}}\nother: *w\n"
    return seeds


def json_seeds():
    return {
        "doc": b'{"n": 1, "price": 101.5, "symbol": "BTC_USDT", "ok": true, "z": null}\n',
        "array": b'[{"a": [1, 2.5e3, "x\\u00e9\\n"]}, {"b": {"c": {"d": -9223372036854775808}}}]',
        "lines": b'{"n":1}\n{"n":18446744073709551615}\r\n'
                 b'{"s":"\\ud83d\\ude00 \\"q\\" \\\\ \\u0000"}\n',
        "left-open": b'{"a": [1, 2,',
    }


def tail_line_seeds():
    return {
        "tick": b'{"symbol":"BTC_USDT","ts":1700000000000000,"n":0,"price":43251.07,'
                b'"volume":0.0001,"quote_volume":0.004325107}',
        "numbers": b'{"a": -0, "b": 1e22, "c": 2.2250738585072014e-308, "d": 12345678901234567890,'
                   b' "e": -9223372036854775808, "f": 0.1E-3}',
        "strings": b'{"s": "caf\u00e9 \ud83d\ude00 \"q\" \\ \t", "u": "\xe2\x82\xac"}',
        "nested": b'{"n": 4, "m": {"a": [1, 2]}, "k": "v"}',
        "dup": b'{"a": 1, "b": 2, "a": 3}',
        # json-c 0.16 read these pairs as U+FFFD (common/jsonfix.h): a key
        # and a value of U+1DA00 and U+2D800, an escaped backslash before u
        "surrogates": b'{"k\\ud836\\ude00": "\\ud876\\udc00 \\\\ud836 \\ud835\\ude00"}',
    }


def write(target, seeds):
    folder = os.path.join(CORPUS, target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("fuzz_envelope", envelope_seeds())
    write("fuzz_frames", frames_seeds())
    write("fuzz_config", config_seeds())
    write("fuzz_json", json_seeds())
    write("fuzz_tail_line", tail_line_seeds())
