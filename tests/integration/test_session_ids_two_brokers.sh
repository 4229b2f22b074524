#!/usr/bin/env bash
# test_session_ids_two_brokers.sh -- two brokers started in the same
# second on one data directory tree never share a session id, so their
# per-session files (CSV folders here) never mix.
#
# Two buses (own endpoints and spools, one csv dir) are started together
# until a pair starts in the same clock second (the id's time part is the
# same); their first session ids must still differ.  Then each bus runs a
# ticker of its own (seeds 1 and 2, 1,000 ticks) into the shared csv dir:
# each session folder holds one bus's rows, exactly once.
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/a" "$TMP/b"
bus_config() { # FILE NAME SEED
    cat >"$1" <<YAML
broker: {bus: ipc://$TMP/$2/bus, topics: ipc://$TMP/$2/topics, heartbeat_ms: 200,
         spool: $TMP/$2/spool}
plugins_path: [$BUILD/plugins]
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT], limit: 1000, seed: $3, start_ts: 1700000000000000}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, to: [csv]}
YAML
}
bus_config "$TMP/a.yaml" a 1
bus_config "$TMP/b.yaml" b 2

session_of() { # LOG: the session id of "broker listening"
    sed -n 's/.*msg="broker listening".* session=\([^ ]*\).*/\1/p' "$1" | head -n 1
}

same_second=false
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    start broker_a "$BIN/dcbus-broker" --config "$TMP/a.yaml"
    start broker_b "$BIN/dcbus-broker" --config "$TMP/b.yaml"
    wait_for "$TMP/broker_a.log" 'msg="broker listening"' 10 &&
        wait_for "$TMP/broker_b.log" 'msg="broker listening"' 10 ||
        die "both brokers start"
    id_a=$(session_of "$TMP/broker_a.log")
    id_b=$(session_of "$TMP/broker_b.log")
    # idle-YYYYmmddTHHMMSSZ-...: the same second when the first two parts agree
    if [[ $(cut -d- -f1-2 <<<"$id_a") == $(cut -d- -f1-2 <<<"$id_b") ]]; then
        same_second=true
        break
    fi
    stop broker_a
    stop broker_b
done
check "two brokers started in the same second (attempt $attempt)" $same_second
check "their sessions have different ids ($id_a, $id_b)" test "$id_a" != "$id_b"

start ticker_a "$BIN/dcbus-worker" --instance ticker --config "$TMP/a.yaml"
start csv_a "$BIN/dcbus-worker" --instance csv --config "$TMP/a.yaml"
start ticker_b "$BIN/dcbus-worker" --instance ticker --config "$TMP/b.yaml"
start csv_b "$BIN/dcbus-worker" --instance csv --config "$TMP/b.yaml"
for t in ticker_a ticker_b; do
    wait_exit $t 60 || die "$t collects its 1,000 ticks"
done
wait_for_rows() { # FILE N: until FILE has N data rows (30 s)
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -f $1 && $(($(wc -l <"$1") - 1)) -ge $2 ]] && return 0
        sleep 0.05
    done
    return 1
}
for s in a b; do
    id=$([[ $s == a ]] && echo "$id_a" || echo "$id_b")
    file="$TMP/csv/$id/prices.csv"
    check "bus $s's rows all reach its own session folder" \
        wait_for_rows "$file" 1000
done
for name in csv_a csv_b broker_a broker_b; do stop $name; done
for s in a b; do
    id=$([[ $s == a ]] && echo "$id_a" || echo "$id_b")
    check "bus $s's session folder holds its 1,000 rows exactly once" \
        "$PY" "$LIB_PY" check-n "$TMP/csv/$id/prices.csv" 1000
done
finish
