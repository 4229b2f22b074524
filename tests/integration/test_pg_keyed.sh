#!/usr/bin/env bash
# test_pg_keyed.sh -- the postgres sink's keyed mode (key: [event_id]):
# spray events saved and updated through the bus into a real PostgreSQL 15
# (pg_env.sh), exact through redelivery, kill -9 of the sink and of the
# broker.
#
# 100,000 events (seed 000's spray events: event_id, sequence_id,
# event_type, nozzle, pressure, version), 20 % of them updates of events
# saved before (some in the same batch as their save), replayed by a
# mock-source into postgres (typed, key: [event_id]).  The sink is made to
# hold batches it has stored but not yet acknowledged: a psql session locks
# the table, so the worker blocks in its upsert, and the worker is killed
# with SIGKILL there (its batches come again to the restarted worker); then
# the broker is killed with SIGKILL while it delivers and started again.
# At the end the table must hold each event once, in its latest version:
# compared with the expected versions row for row; and the session's row
# in the sessions table must count the rows written -- one per event id per
# batch (a batch's upsert takes each id's last version in it), a
# redelivered batch none.
root=${DCBUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$root/tests/integration/pg_env.sh" || exit 1
. "$(dirname "$0")/lib.sh"
trap 'lib_cleanup; pg_env_cleanup' EXIT

EVENTS=100000
CFG=$TMP/keyed.yaml
sql() { "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
rows() { sql "SELECT count(*) FROM spray_events" 2>/dev/null || echo 0; }

# The events, and the latest version of each (event_id order) as CSV.
BATCH=200
"$PY" - "$TMP/events.jsonl" "$TMP/expected.csv" "$EVENTS" "$BATCH" >"$TMP/written" <<'PY'
import json, random, sys
out, expected, total, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(7)
latest, saved, keys = {}, [], []
with open(out, "w") as f:
    for i in range(total):
        if i % 5 == 4:  # an update of an event saved before
            eid = saved[-1] if i % 25 == 4 else rng.choice(saved)
            e = dict(latest[eid], version=latest[eid]["version"] + 1,
                     pressure=round(rng.uniform(1, 4), 3))
        else:
            eid = "e%06d" % len(saved)
            saved.append(eid)
            e = {"event_id": eid, "sequence_id": "S%d" % (len(saved) % 7),
                 "event_type": ("spray", "move", "pause")[len(saved) % 3],
                 "nozzle": len(saved) % 4, "pressure": 2.5, "version": 0}
        latest[eid] = e
        keys.append(eid)
        f.write(json.dumps(e) + "\n")


def pg_float(x):  # as PostgreSQL prints a double: the shortest exact text
    r = repr(float(x))
    return r[:-2] if r.endswith(".0") else r


with open(expected, "w") as f:
    for eid in sorted(latest):
        e = latest[eid]
        f.write("%s,%s,%s,%d,%s,%d\n" % (eid, e["sequence_id"], e["event_type"], e["nozzle"],
                                        pg_float(e["pressure"]), e["version"]))
# rows written: one per event id per batch (its last version in the batch)
print(sum(len(set(keys[i:i + batch])) for i in range(0, total, batch)))
PY
WRITTEN=$(cat "$TMP/written")
{
    config_head
    echo "workers:"
    echo "  src: {plugin: mock-source, json_lines: $TMP/events.jsonl, batch: $BATCH, stream: spray}"
    echo "  pg:"
    echo "    plugin: postgres"
    echo "    dsn: \"\${DATABASE_URL}\""
    echo "    table: spray_events"
    echo "    mode: typed"
    echo "    key: [event_id]"
    echo "    reconnect_max_ms: 500"
    echo "    columns:"
    echo "      event_id: {type: text}"
    echo "      sequence_id: {type: text}"
    echo "      event_type: {type: text}"
    echo "      nozzle: {type: integer}"
    echo "      pressure: {type: double}"
    echo "      version: {type: bigint}"
    echo "      session_id: {type: text, field: \$session}"
    echo "pipelines:"
    echo "  p: {from: src, to: [pg]}"
} >"$CFG"

broker "$CFG"
worker pg "$CFG"
wait_joined pg || die "the postgres worker joins"
session=$("$BIN/dcbus" sessions start run --meta sequence_id=S1 --config "$CFG" | awk '{print $3}')
check "a run session starts ($session)" test -n "$session"

# The table locked for 3 s: the worker blocks inside its upsert, holding
# stored, unacknowledged batches; it is killed there.
start lock "$PG_BIN/psql" -XAtq -c "BEGIN; LOCK TABLE spray_events IN EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT"
for ((i = 0; i < 100; i++)); do
    [ "$(sql "SELECT count(*) FROM pg_locks WHERE relation = 'spray_events'::regclass AND mode = 'ExclusiveLock' AND granted")" = 1 ] && break
    sleep 0.05
done
worker src "$CFG"
for ((i = 0; i < 200; i++)); do
    [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO%'")" -ge 1 ] && break
    sleep 0.05
done
check "the worker waits in its upsert, the table locked" \
    test "$(sql "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO%'")" -ge 1
kill -KILL "${PID[pg]}"
wait_exit pg 5
check "kill -9 of the postgres worker in its upsert" test "${STATUS[pg]}" -eq 137
worker pg "$CFG"
wait_exit lock 10
for ((i = 0; i < 600 && $(rows) < EVENTS / 4; i++)); do sleep 0.05; done
kill -KILL "${PID[broker]}"
wait_exit broker 5
check "kill -9 of the broker with $(rows) rows in the table" test "${STATUS[broker]}" -eq 137
broker "$CFG"
check "the source finishes" wait_exit src 60
check_delivered 60 "every batch is delivered"
"$BIN/dcbus" sessions end --config "$CFG" >/dev/null

sql "COPY (SELECT event_id, sequence_id, event_type, nozzle, pressure, version FROM spray_events
           ORDER BY event_id) TO STDOUT (FORMAT csv)" >"$TMP/table.csv"
want=$(wc -l <"$TMP/expected.csv")
check "each event once: $(wc -l <"$TMP/table.csv") rows, $want expected" \
    test "$(wc -l <"$TMP/table.csv")" -eq "$want"
check "every row is the event's latest version (row for row)" cmp -s "$TMP/expected.csv" "$TMP/table.csv"
cmp "$TMP/expected.csv" "$TMP/table.csv" | sed 's/^/    | /'
diff "$TMP/expected.csv" "$TMP/table.csv" | head -6 | sed 's/^/    | /'
check "the rows carry their run" test "$(sql "SELECT count(*) FROM spray_events WHERE session_id = '$session'")" -eq "$want"
for ((i = 0; i < 100; i++)); do
    [ "$(sql "SELECT status FROM data_collection_sessions WHERE session_id = '$session'")" = completed ] && break
    sleep 0.05
done
check "the sessions table counts each row written once: $(sql "SELECT records_count FROM data_collection_sessions WHERE session_id = '$session'"), $WRITTEN expected" \
    test "$(sql "SELECT records_count || status FROM data_collection_sessions WHERE session_id = '$session'")" = "${WRITTEN}completed"
finish
