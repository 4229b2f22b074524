#!/usr/bin/env bash
# test_pg_refused.sh -- PostgreSQL answering "no" stops the postgres worker
# with the server's reason; PostgreSQL away is waited for.
#
# Against a throwaway PostgreSQL 15 (pg_env.sh), `dcbus run` of a mock
# source -> a postgres sink, for three settings the server refuses:
#   nodb    a database that does not exist (FATAL 3D000 at connect);
#   norole  a role without rights (no CREATE on schema public: the first
#           migration fails with 42501);
#   guarded a migration the server refuses: an event trigger in that
#           database refuses CREATE TABLE with a hint of some 700 bytes that
#           ends in a marker, so a message cut anywhere loses the marker.
# For each, with a broker of its own and `dcbus watch` on error.*, the
# worker stops by itself (exit 2, refused for good) with the server's whole
# message in its log (for guarded: to the end of its HINT, on one line) and
# one CONFIGURATION error published on error.*; then under `dcbus run` the
# run ends by itself with exit 3, naming the instance and the server's
# reason, and the sink is not restarted.  With `on_config_error: retry`
# (patient, a database that does not exist) the worker stays up, asks again
# each time its batch comes back, and says so once (config_error_repeat_s).
root=${DCBUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$root/tests/integration/pg_env.sh" || exit 1
. "$(dirname "$0")/lib.sh"
trap 'lib_cleanup; pg_env_cleanup' EXIT

sql() { "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 "$@"; }
HINT="ask the owner of this database for a table$(printf ' (this hint is long on purpose)%.0s' {1..22}) END-OF-HINT"
sql -c "CREATE ROLE reader LOGIN" -c "CREATE DATABASE guarded" || die "the fixtures are made"
sql -d guarded <<SQL || die "the event trigger is made"
CREATE FUNCTION no_tables() RETURNS event_trigger LANGUAGE plpgsql AS \$\$
BEGIN
    RAISE EXCEPTION 'no new tables in this database' USING HINT = '$HINT';
END
\$\$;
CREATE EVENT TRIGGER no_tables ON ddl_command_start WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION no_tables();
SQL

url=postgresql://dcbus@127.0.0.1:$PGPORT
declare -A DSN=([nodb]="$url/nosuchdb" [norole]="postgresql://reader@127.0.0.1:$PGPORT/dcbus"
    [guarded]="$url/guarded")
declare -A MESSAGE=([nodb]='FATAL:  database "nosuchdb" does not exist'
    [norole]='ERROR:  permission denied for schema public'
    [guarded]="ERROR:  no new tables in this database
HINT:  $HINT")
CASES="nodb norole guarded"

# config NAME...: a mock source into each postgres instance NAME; `patient`
# retries its refusals.
config() {
    local name
    config_head
    echo "workers:"
    for name in "$@"; do
        echo "  mock_$name: {plugin: mock-source, records: 10, batch: 10}"
        if [[ $name == patient ]]; then
            echo "  patient: {plugin: postgres, dsn: \"$url/nosuchdb\", table: events," \
                "on_config_error: retry, reconnect_min_ms: 50, reconnect_max_ms: 100," \
                "config_error_repeat_s: 3600}"
        else
            echo "  $name: {plugin: postgres, dsn: \"${DSN[$name]}\", table: events}"
        fi
    done
    echo "pipelines:"
    for name in "$@"; do echo "  p_$name: {from: mock_$name, to: [$name]}"; done
}

# --- each sink alone, its reports on error.* ------------------------------------
CFG=$TMP/bus.yaml
config $CASES patient >"$CFG"
broker "$CFG"
start watch "$BIN/dcbus" watch --topics "$TOPICS" error. metrics --json
wait_for "$TMP/watch.log" '"topic":"metrics"' 10 || die "dcbus watch receives the metrics topic"
for name in $CASES; do worker "$name" "$CFG"; done
for name in $CASES; do
    wait_exit "$name" 30 || die "$name: the worker stops by itself within 30 s"
    check "$name: it exits 2, refused for good (${STATUS[$name]})" test "${STATUS[$name]}" -eq 2
    check "$name: its log has the server's message: ${MESSAGE[$name]}" \
        grep -qF -- "$(tr '\n' ' ' <<<"${MESSAGE[$name]}" | sed 's/ $//')" "$TMP/$name.log"
done
grep -qF "ERROR:  no new tables in this database HINT:  $HINT CONTEXT:  " "$TMP/guarded.log"
check "guarded: its log line holds the message and the whole HINT, to its end" test $? -eq 0
check "a refusal left no table behind" \
    test "$(sql -d guarded -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")" -eq 0

# --- on_config_error: retry: it stays, asks again, says it once ------------------
worker patient "$CFG"
wait_joined patient || die "with on_config_error: retry the refused sink joins the broker"
worker mock_patient "$CFG" # its batch is refused for redelivery, again and again
refusals() { grep -c 'database "nosuchdb" does not exist' "$PG_ENV_DIR/server.log"; }
before=$(refusals)
for _ in {1..300}; do
    (($(refusals) >= before + 5)) && break
    sleep 0.1
done
check "patient keeps asking the server ($(($(refusals) - before)) more refusals in its log)" \
    test "$(refusals)" -ge $((before + 5))
check "patient is still running" running patient
said=$(grep -c 'msg="PostgreSQL refused this instance' "$TMP/patient.log")
check "patient said the refusal once, not once per attempt ($said)" test "$said" -eq 1
stop patient
check "patient stops on SIGTERM with exit 0" test "${STATUS[patient]}" -eq 0

kill -INT "${PID[watch]}"
wait_exit watch 5
# An ErrorInfo names no instance: each is told by its message.  nodb and
# patient are refused alike, each said it once.
out=$("$PY" - "$TMP/watch.log" "${MESSAGE[nodb]}" "${MESSAGE[norole]}" "${MESSAGE[guarded]}" <<'PY'
import json, sys
errors = [json.loads(line)["body"] for line in open(sys.argv[1])]
errors = [e for e in errors if e.get("error_type") == "CONFIGURATION"]
for message, want in zip(sys.argv[2:], [2, 1, 1]):
    n = sum(message in e["message"] for e in errors)
    print("%s: %d CONFIGURATION error(s) on error.* with '%s' (%d wanted)" % (
        "ok" if n == want else "FAIL", n, message.split("\n")[0], want))
PY
)
report "$out"

# --- under dcbus run: it ends, exit 3, naming the instance ------------------------
stop broker
for name in $CASES; do
    config "$name" >"$TMP/$name.yaml"
    start "run_$name" "$BIN/dcbus" run "$TMP/$name.yaml"
    wait_exit "run_$name" 60 || die "$name: dcbus run ends by itself within 60 s"
    check "$name: dcbus run exits 3 (${STATUS[run_$name]})" test "${STATUS[run_$name]}" -eq 3
    line=$(grep "^dcbus run: not restarted, refused for good: instance=$name replica=0 exit=2: plugin not opened: plugin postgres: open() failed: " "$TMP/run_$name.log")
    check "$name: it names the instance and the server's reason: ${line:0:60}..." \
        grep -qF -- "$(head -n 1 <<<"${MESSAGE[$name]}")" <<<"$line"
    check "$name: the sink was not restarted" \
        test "$(grep -c "msg=\"child restarted\" instance=$name" "$TMP/run_$name.log")" -eq 0
done
finish
