"""test_collector_second_connection.py -- a second connection under a
running collector's name must not stall it.

A collector's instance name is all the broker knows it by.  A second copy
started by mistake, a collector that reconnected while its old connection
still lingers, or any client that says HELLO as that instance, makes two
connections of one collector.  Whichever it is, the broker owes each batch's
acknowledgement to the connection that sent it: if it goes elsewhere, the
real collector waits for it forever, its window fills and the pipeline
stalls.

While ticker -> json-validate -> csv runs (300,000 ticks at 100,000 a
second), a client registers as `ticker`, then falls silent and vanishes
(the broker drops it after the heartbeat time-out).  It checks that the
real collector still ends by itself, that the broker then delivers every
batch to the sink, and that the CSV files are byte for byte
dcbus-reference's, n 0..N-1 once each.
"""

import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TICKS = 300000
BOOKS = TICKS // 10

bus = lib.Bus()


def config(name, rate):
    return bus.write(name, bus.config_head() + """workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: %d, seed: 5,
           start_ts: 1700000000000000%s}
  validate: {plugin: json-validate, required: [symbol, ts, n]}
  csv: {plugin: csv, dir: %s}
pipelines:
  ticks: {from: ticker, through: [validate], to: [csv]}
""" % (TICKS, ", rate: %d" % rate if rate else "", bus.path("csv")))


def second_connection():
    """Says HELLO as `ticker`, waits for READY, then goes silent."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IDENTITY, b"second-ticker")
    s.connect(bus.bus_ep)
    s.send_multipart([b"DCB1", b"HELLO", msgpack.packb(
        {"role": "collector", "instance": "ticker", "plugin": "ticker", "replica": 1,
         "abi": 2 << 16, "credit": 16})])
    ready = False
    deadline = time.monotonic() + 3
    while not ready and time.monotonic() < deadline:
        if s.poll(100):
            ready = s.recv_multipart()[1] == b"READY"
    bus.check("a second connection registers as the collector ticker", ready)
    return s


def main():
    cfg = config("bus.yaml", 100000)
    bus.broker(cfg)
    bus.worker("csv", cfg)
    bus.worker("validate", cfg)
    for name in ("csv", "validate"):
        bus.wait_log("broker", 'msg="worker joined" instance=%s ' % name, 10)
    t0 = time.monotonic()
    bus.worker("ticker", cfg)
    bus.wait_log("broker", 'msg="worker joined" instance=ticker ', 10)
    time.sleep(0.3)
    s = second_connection()
    gone = bus.wait_log("broker", 'msg="worker left" instance=ticker replica=1 ', 5)
    bus.check("the broker drops the silent second connection", gone)
    s.close()
    bus.check("that happened while the real collector ran", bus.procs["ticker"].poll() is None,
              "%.1f s into the run" % (time.monotonic() - t0))

    status = bus.wait("ticker", 20)
    bus.check("the real collector ends by itself with exit 0", status == 0,
              "status %s after %.1f s" % (status, time.monotonic() - t0))
    delivered, in_flight = bus.wait_delivered(60)
    bus.check("the broker delivers every batch to the sink", delivered,
              "%.1f s into the run" % (time.monotonic() - t0) if delivered
              else "batches_in_flight %s after 60 s" % in_flight)
    result = lib.stats(bus.bus_ep)
    sink = lib.instance_stats(result, "csv")["records_out"]
    bus.check("stats: the sink acknowledged %d records" % (TICKS + BOOKS), sink == TICKS + BOOKS,
              str(sink))
    for name in ("ticker", "validate", "csv", "broker"):
        bus.stop(name)

    bus.check("dcbus-reference runs the same pipeline in process",
              bus.reference(config("reference.yaml", 0)) == 0)
    ok, messages = lib.compare_sessions(bus.path("csv"))
    for m in messages:
        bus.check(m, "identical" in m)
    bus.finish()


main()
