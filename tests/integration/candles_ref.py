"""candles_ref.py -- the OHLCV candles the ohlcv processor should make,
computed offline from the ticks a csv sink stored, and the closed candles
it did store, for the tests that compare them (test_ohlcv_kill.py,
ohlcv_chaos.py)."""

import csv
import os


def csv_files(csv_dir, name):
    """(session, path) of every session's file `name` under csv_dir."""
    out = []
    for root, _, files in os.walk(csv_dir):
        if name in files:
            out.append((os.path.basename(root), os.path.join(root, name)))
    return sorted(out)


def read_ticks(csv_dir):
    """Every stored tick as (n, session, symbol, ts, price, volume,
    quote_volume), in the order of n."""
    ticks, names = [], {}
    for session, path in csv_files(csv_dir, "prices.csv"):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                symbol = names.setdefault(r["symbol"], r["symbol"])
                ticks.append((int(r["n"]), session, symbol, int(r["ts"]), float(r["price"]),
                              float(r["volume"]), float(r["quote_volume"])))
    ticks.sort()
    return ticks


def offline_candles(ticks, intervals):
    """The candles of the ticks, in their order, for each interval (name ->
    microseconds): key (session, symbol, interval, open_time) -> fields."""
    out = {}
    for _, session, symbol, ts, price, volume, quote in ticks:
        for name, iv in intervals.items():
            start = ts - ts % iv
            c = out.get((session, symbol, name, start))
            if c is None:
                c = out[(session, symbol, name, start)] = {
                    "open": price, "high": price, "low": price, "volume": 0.0,
                    "quote_volume": 0.0, "trades_count": 0, "close_time": start + iv}
            c["high"] = max(c["high"], price)
            c["low"] = min(c["low"], price)
            c["close"] = price
            c["volume"] += volume
            c["quote_volume"] += quote
            c["trades_count"] += 1
    return out


def closed_csv_candles(csv_dir, on_double):
    """The closed candles in the CSV files, by the same key; a key closed
    twice is passed to on_double(key)."""
    stored = {}
    for _, path in csv_files(csv_dir, "prices.ohlcv.csv"):
        with open(path, newline="") as f:
            for c in csv.DictReader(f):
                if c["is_closed"] not in ("true", "1", "True"):
                    continue
                key = (c["session_id"], c["symbol"], c["interval"], int(c["open_time"]))
                if key in stored:
                    on_double(key)
                stored[key] = c
    return stored
