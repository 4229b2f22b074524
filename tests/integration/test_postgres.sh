#!/usr/bin/env bash
# test_postgres.sh -- the postgres storage plugin against a real PostgreSQL 15.
#
# Starts a throwaway server (pg_env.sh: temporary cluster, loopback port,
# every statement logged) and runs the plugin's cmocka program against it:
# a million ticks, redelivery, queries, hostile field names, migrations,
# sessions, and the server stopped and restarted mid-run.
set -euo pipefail
root=${DCBUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${DCBUS_BUILD_DIR:-$root/build}
program=$build/bin/test_plugin_postgres
[ -x "$program" ] || { echo "test_postgres: $program is not built" >&2; exit 1; }

PG_ENV_OPTS="-c log_statement=all" . "$root/tests/integration/pg_env.sh"
"$program"
