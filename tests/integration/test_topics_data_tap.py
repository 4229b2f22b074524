"""test_topics_data_tap.py -- the data.<stream> tap is optional.

mock-source -> mock-storage, twice (the second time as a new run of the
source, `--run`: the first one finished it): with the default config, a subscriber
to `data.` receives nothing (the tap is off: it would cost a copy of the
data stream per subscriber); with `broker.data_tap: true` it receives every
batch as the collector sent it, on data.<stream>, and their records add up
to every record.
"""

import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RECORDS, BATCH = 1000, 10
bus = lib.Bus()


def run(name, extra):
    config = bus.write(name + ".yaml", bus.config_head(broker_extra=extra) + """workers:
  src:  {plugin: mock-source, records: %d, batch: %d, stream: tapped}
  sink: {plugin: mock-storage, file: %s.txt}
pipelines:
  p: {from: src, to: [sink]}
""" % (RECORDS, BATCH, name))
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"data.")
    bus.broker(config)
    sub.connect(bus.topics_ep)
    time.sleep(0.5)
    bus.worker("sink", config)
    bus.start("src", os.path.join(bus.bin, "dcbus-worker"), "--instance", "src", "--config", config,
              "--run", "src-" + name)
    bus.check("%s: the collector finished" % name, bus.wait("src", 20) == 0)
    delivered, in_flight = bus.wait_delivered(20)
    bus.check("%s: the broker delivers every batch to the sink" % name, delivered,
              "" if delivered else "batches_in_flight %s after 20 s" % in_flight)
    time.sleep(0.5)
    batches, records, topics = 0, 0, set()
    while sub.poll(100):
        topic, body = sub.recv_multipart()
        env = msgpack.unpackb(body, raw=False)
        topics.add(topic.decode())
        batches += 1
        records += len(env["records"])
    sub.close()
    bus.stop("sink")
    bus.stop("broker")
    return batches, records, topics


batches, records, _ = run("off", "")
bus.check("tap off (the default): a data. subscriber gets nothing", batches == 0,
          "%d batches" % batches)
batches, records, topics = run("on", ", data_tap: true")
bus.check("tap on: every batch is published", batches == RECORDS // BATCH, "%d batches" % batches)
bus.check("tap on: on data.<stream>", topics == {"data.tapped"}, str(topics))
bus.check("tap on: the records add up", records == RECORDS, "%d records" % records)
bus.finish()
