#!/usr/bin/env bash
# test_spray_dual_write.sh -- config/spray.yaml with both backends: the
# example process's runs stored by the runs sink (spray_history.csv, run
# files) and by postgres in keyed mode (spray_events, the sessions table),
# one pipeline `to: [runs, pg]`, against a real PostgreSQL 15 (pg_env.sh).
# The checks are test_process_example.py's, and in dual mode it compares
# the table with the CSV event for event.
root=${DCBUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$root/tests/integration/pg_env.sh" || exit 1
PG_BIN=$PG_BIN DCBUS_SPRAY_DUAL=1 /usr/bin/python3 "$root/tests/integration/test_process_example.py"
