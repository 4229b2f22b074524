# pg_env.sh -- a throwaway PostgreSQL server for tests and benchmarks.
#
# Source it from bash:   . tests/integration/pg_env.sh
#
# It initdb's a fresh cluster in a temporary directory, starts it on a free
# loopback port (TCP on 127.0.0.1 only, unix socket inside the directory),
# creates a database and exports what libpq and psql need:
#
#     PGHOST PGPORT PGUSER PGDATABASE DATABASE_URL
#     PG_ENV_DIR   the temporary directory (server log: $PG_ENV_DIR/server.log)
#     PG_ENV_STOP  a command line that stops the server (fast shutdown)
#     PG_ENV_START a command line that starts it again on the same port
#
# The server is stopped and the directory removed when the sourcing shell
# exits (an EXIT trap; HUP, INT and TERM exit through it).  A script that
# needs its own EXIT trap calls pg_env_cleanup from it.
#
# Tests run as root in CI, and initdb refuses root: the cluster is then owned
# and run by the `postgres` system user (Debian's packages create it).
#
# Knobs (environment, all optional):
#     PG_BIN          server binaries (default /usr/lib/postgresql/15/bin)
#     PG_ENV_OPTS     extra server options, e.g. "-c log_statement=all"
#     PG_ENV_KEEP=1   keep the directory after exit (for post-mortems)

pg_env_fail() {
    echo "pg_env: $*" >&2
    [ -n "${PG_ENV_DIR:-}" ] && [ -f "$PG_ENV_DIR/server.log" ] && tail -n 20 "$PG_ENV_DIR/server.log" >&2
    pg_env_cleanup
    return 1
}

# Prints a TCP port nobody listens on (bound then released by the kernel).
pg_env_free_port() {
    /usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

pg_env_cleanup() {
    [ -n "${PG_ENV_DIR:-}" ] || return 0
    if [ -f "$PG_ENV_DIR/data/postmaster.pid" ]; then
        $PG_ENV_AS "$PG_BIN/pg_ctl" -D "$PG_ENV_DIR/data" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ "${PG_ENV_KEEP:-0}" = 1 ]; then
        echo "pg_env: kept $PG_ENV_DIR" >&2
    else
        rm -rf "$PG_ENV_DIR"
    fi
    PG_ENV_DIR=
}

pg_env_start() {
    PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
    [ -x "$PG_BIN/initdb" ] || { echo "pg_env: no initdb in $PG_BIN" >&2; return 1; }

    PG_ENV_DIR=$(mktemp -d /tmp/dcbus-pg.XXXXXX) || return 1
    PG_ENV_AS=
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PG_ENV_DIR"
        PG_ENV_AS="runuser -u postgres --"
    fi
    trap pg_env_cleanup EXIT
    trap 'exit 129' HUP # a signal ends the shell through its EXIT trap, so
    trap 'exit 130' INT # a killed test leaves no server or directory behind
    trap 'exit 143' TERM

    $PG_ENV_AS "$PG_BIN/initdb" -D "$PG_ENV_DIR/data" -U dcbus --auth=trust -E UTF8 \
        --locale=C --no-sync >"$PG_ENV_DIR/initdb.log" 2>&1 ||
        { cat "$PG_ENV_DIR/initdb.log" >&2; pg_env_fail "initdb failed"; return 1; }

    local port options
    port=$(pg_env_free_port) || { pg_env_fail "no free port"; return 1; }
    options="-p $port -k $PG_ENV_DIR -c listen_addresses=127.0.0.1 ${PG_ENV_OPTS:-}"
    PG_ENV_START="$PG_ENV_AS $PG_BIN/pg_ctl -D $PG_ENV_DIR/data -l $PG_ENV_DIR/server.log -w -o '$options' start"
    PG_ENV_STOP="$PG_ENV_AS $PG_BIN/pg_ctl -D $PG_ENV_DIR/data -m fast -w stop"
    eval "$PG_ENV_START" >/dev/null || { pg_env_fail "server did not start"; return 1; }

    export PGHOST=127.0.0.1 PGPORT=$port PGUSER=dcbus PGDATABASE=dcbus
    export DATABASE_URL="postgresql://dcbus@127.0.0.1:$port/dcbus"
    export PG_ENV_DIR PG_ENV_START PG_ENV_STOP
    "$PG_BIN/createdb" -h "$PG_ENV_DIR" -p "$port" -U dcbus dcbus ||
        { pg_env_fail "createdb failed"; return 1; }
}

pg_env_start
