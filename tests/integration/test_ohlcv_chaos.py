"""test_ohlcv_chaos.py -- scripts/chaos-ohlcv's run at a smaller size:
300,000 ticks of three symbols at 15,000 ticks/s (at least 20 s) through
ticker -> ohlcv (1s, 1m, 5m, 15m, 1h) -> csv + ilp into a real InfluxDB
1.6, the ohlcv worker and the broker each killed with SIGKILL twice and
the ilp worker once, at moments scheduled within the ticker's shortest
possible run (the broker with batches in flight), the session changed
half way; then every tick and every closed candle in the
CSV and in InfluxDB compared with candles computed here from the ticks
(ohlcv_chaos.py says exactly what is compared).  The kills are scheduled,
not timed: the ticker is paced, so it cannot finish before the last.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ohlcv_chaos  # noqa: E402

bus, res = ohlcv_chaos.run(ticks=300000, rate=15000, kills_each=2, seed=12)
print(res.line())
bus.check("nothing lost, doubled or mismatched", res.ok(), res.line())
bus.finish()
