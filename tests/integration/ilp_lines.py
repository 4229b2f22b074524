"""ilp_lines.py -- a strict reader of InfluxDB line protocol, for tests.

    points = ilp_lines.parse(text)   # [(measurement, {tag: value}, {field: value}, ts)]

Raises ValueError, saying where, on anything a careful writer would not
send: a newline outside a string field, an unescaped comma, space or
equals sign where it would be ambiguous, a backslash at the end of a name,
an empty name, tag or field, a value that is no float, integer (`i`),
boolean or string (NaN, infinities, `u` integers included), a missing or
non-integer timestamp, a line without its final newline.  Integer fields
come back as int, floats as float, strings with their escapes undone.
"""

import re

FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
INT = re.compile(r"^[+-]?\d+i$")
BOOLS = {"t": True, "T": True, "true": True, "True": True, "TRUE": True,
         "f": False, "F": False, "false": False, "False": False, "FALSE": False}


def _name(s, i, stops, escapable, what):
    out = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("%s: a backslash at the end" % what)
            if s[i + 1] in escapable:
                out.append(s[i + 1])
                i += 2
                continue
            out.append(c)
            i += 1
            continue
        if c in stops:
            break
        if c in "\n\r":
            raise ValueError("%s: a newline at offset %d" % (what, i))
        if c in escapable:
            raise ValueError("%s: an unescaped %r at offset %d" % (what, c, i))
        out.append(c)
        i += 1
    if not out:
        raise ValueError("%s: empty at offset %d" % (what, i))
    return "".join(out), i


def _string(s, i):
    assert s[i] == '"'
    i += 1
    out = []
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in '"\\':
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ValueError("a string field without its closing quote")


def _value(s, i):
    if s[i] == '"':
        return _string(s, i)
    j = i
    while j < len(s) and s[j] not in ", \n":
        j += 1
    tok = s[i:j]
    if INT.match(tok):
        return int(tok[:-1]), j
    if tok in BOOLS:
        return BOOLS[tok], j
    if FLOAT.match(tok):
        return float(tok), j
    raise ValueError("not a field value: %r" % tok)


def parse(text):
    points = []
    i, n = 0, len(text)
    while i < n:
        start = i
        if text[i] == "#":
            raise ValueError("a comment line at offset %d" % i)
        meas, i = _name(text, i, ", ", ", ", "measurement")
        tags = {}
        while i < n and text[i] == ",":
            k, i = _name(text, i + 1, "=", ", =", "tag key")
            if i >= n or text[i] != "=":
                raise ValueError("tag %s without '='" % k)
            v, i = _name(text, i + 1, ", ", ", =", "tag value")
            tags[k] = v
        if i >= n or text[i] != " ":
            raise ValueError("no fields at offset %d: %r" % (i, text[start:i + 20]))
        i += 1
        fields = {}
        while True:
            k, i = _name(text, i, "=", ", =", "field key")
            if i >= n or text[i] != "=":
                raise ValueError("field %s without '='" % k)
            v, i = _value(text, i + 1)
            if k in fields:
                raise ValueError("field %s twice" % k)
            fields[k] = v
            if i < n and text[i] == ",":
                i += 1
                continue
            break
        if i >= n or text[i] != " ":
            raise ValueError("no timestamp at offset %d: %r" % (i, text[start:i + 20]))
        j = i + 1
        while j < n and text[j] != "\n":
            j += 1
        ts = text[i + 1:j]
        if not re.match(r"^-?\d+$", ts):
            raise ValueError("timestamp %r" % ts)
        if j >= n:
            raise ValueError("the last line has no newline")
        points.append((meas, tags, fields, int(ts)))
        i = j + 1
    return points
