"""test_query_limits.py -- a storage worker refuses a query it cannot run
as asked, and never runs it cut short.

A query is forwarded by the broker to the storage instance's worker,
which copies the filters for the plugin.  Filter values over 511 bytes,
field names over 127, more than 32 filters, filters that are not strings
and over-long sort fields must each come back as an error that says so
(a cut value would match other rows; a left-out filter, many more).  A
query within the limits reaches the plugin (csv answers "not supported").
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

bus = lib.Bus()
config = bus.write("q.yaml", bus.config_head() + """
workers:
  src: {plugin: mock-source, records: 10, batch: 10, stream: s}
  csv: {plugin: csv, dir: %s}
pipelines:
  p: {from: src, to: [csv]}
""" % bus.path("csv"))
bus.broker(config)
bus.worker("csv", config)
bus.check("the sink joins", bus.wait_log("broker", 'msg="worker joined" instance=csv', 10))


def query(**args):
    return lib.request(bus.bus_ep, "query", dict(args, instance="csv"), timeout_s=10)


reply = query(filters={"symbol": "BTC_USDT"})
bus.check("a query within the limits reaches the plugin",
          not reply["ok"] and "not supported" in reply["error"], reply)

cases = [
    ("a filter value of 512 bytes", {"filters": {"symbol": "x" * 512}}, "at most 511"),
    ("a field name of 128 bytes", {"filters": {"f" * 128: "x"}}, "at most 127"),
    ("33 filters", {"filters": {"f%d" % i: "x" for i in range(33)}}, "more than 32"),
    ("a filter value that is not a string", {"filters": {"n": 7}}, "must be strings"),
    ("a sort field of 128 bytes", {"sort": "s" * 128}, "at most 127"),
]
for what, args, want in cases:
    reply = query(**args)
    bus.check("%s is refused with the reason" % what,
              not reply["ok"] and want in reply.get("error", ""), reply.get("error"))

bus.check("the worker is still up", bus.procs["csv"].poll() is None)
bus.finish()
