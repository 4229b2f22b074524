#!/usr/bin/env bash
# test_cli_check.sh -- the command line's own surface: --help and --version
# of every program, `dcbus check` on the demo config and on broken ones
# (exit status 0 or 2, and a message naming file:line:column), plugin
# settings checked against the declared tables (by check and by the worker
# before open()), and `dcbus plugins`.
set -uo pipefail

BUILD=${DCBUS_BUILD_DIR:?run through ctest, or set DCBUS_BUILD_DIR}
SOURCE=${DCBUS_SOURCE_DIR:?run through ctest, or set DCBUS_SOURCE_DIR}
DCBUS=$BUILD/bin/dcbus
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0
out=""
rc=0

# run CMD...: runs it, keeps its stdout+stderr in $out and its status in $rc.
run() {
    out=$("$@" 2>&1)
    rc=$?
}

fail() {
    failed=$((failed + 1))
    echo "FAIL: $1"
    echo "  output:"
    printf '%s\n' "$out" | sed 's/^/    | /'
}

# expect WHAT RC [PATTERN...]: the last run exited RC and its output matches
# every extended regex PATTERN.
expect() {
    local what=$1 want=$2
    shift 2
    if [[ $rc -ne $want ]]; then
        fail "$what: exit status $rc, expected $want"
        return
    fi
    local p
    for p in "$@"; do
        if ! grep -Eq -- "$p" <<<"$out"; then
            fail "$what: output lacks /$p/"
            return
        fi
    done
    passed=$((passed + 1))
}

# config NAME: writes stdin to $TMP/NAME and prints its path.
config() {
    cat >"$TMP/$1"
    echo "$TMP/$1"
}

# --- help and version ---------------------------------------------------------
run "$DCBUS" --help
expect "dcbus --help" 0 "^usage: dcbus" "^  run " "^  check " "^  stats "
run "$DCBUS" --version
expect "dcbus --version" 0 "^dcbus [0-9]+\.[0-9]+\.[0-9]+"
run "$DCBUS"
expect "dcbus without a command" 2 "^usage: dcbus"
run "$DCBUS" frobnicate
expect "an unknown command" 2 "no command 'frobnicate'"
for cmd in run check stats plugins; do
    run "$DCBUS" "$cmd" --help
    expect "dcbus $cmd --help" 0 "^usage: dcbus $cmd"
    run "$DCBUS" help "$cmd"
    expect "dcbus help $cmd" 0 "^usage: dcbus $cmd"
    run "$DCBUS" "$cmd" --no-such-option
    expect "dcbus $cmd --no-such-option" 2 "unknown option '--no-such-option'"
done
run "$DCBUS" stats --watch
expect "an option without its argument" 2 "option '--watch' needs an argument"
for prog in dcbus-broker dcbus-worker; do
    run "$BUILD/bin/$prog" --help
    expect "$prog --help" 0 "$prog"
done

# --- stats without a broker -----------------------------------------------------
run "$DCBUS" stats --broker "ipc://$TMP/nobody"
expect "stats with no broker there" 1 "no answer from broker at ipc://$TMP/nobody"
run "$DCBUS" stats --config "$TMP/does-not-exist.yaml"
expect "stats with a config that cannot be read" 2 "does-not-exist.yaml"

# --- check: valid configs -----------------------------------------------------
demo=$(sed "s|^plugins_path:.*|plugins_path: [$BUILD/plugins]|" "$SOURCE/config/demo.yaml" |
    config demo.yaml)
run "$DCBUS" check "$demo"
expect "the demo config" 0 "^$demo: ok \(3 workers, 1 pipelines\)$"

unused=$(config unused.yaml <<YAML
plugins_path: [$BUILD/plugins]
workers:
  src: {plugin: mock-source}
  sink: {plugin: mock-storage, file: $TMP/out}
  spare: {plugin: mock-storage, file: $TMP/spare}
pipelines:
  p: {from: src, to: [sink]}
YAML
)
run "$DCBUS" check "$unused"
expect "an unused worker is a warning, not an error" 0 \
    "unused.yaml:5:3: warning: worker spare is used by no pipeline" "ok \(3 workers, 1 pipelines\)"

# --- check: broken configs ----------------------------------------------------
run "$DCBUS" check "$TMP/does-not-exist.yaml"
expect "a missing file" 2 "does-not-exist.yaml"

syntax=$(printf 'workers:\n  a: {plugin: mock-source\npipelines: {}\n' | config syntax.yaml)
run "$DCBUS" check "$syntax"
expect "a YAML syntax error" 2 "syntax.yaml:[0-9]+:[0-9]+: "

noplugin=$(config noplugin.yaml <<YAML
plugins_path: [$BUILD/plugins]
workers:
  src: {plugin: no-such-plugin}
  sink: {plugin: mock-storage, file: $TMP/out}
pipelines:
  p: {from: src, to: [sink]}
YAML
)
run "$DCBUS" check "$noplugin"
expect "a plugin that does not exist" 2 "noplugin.yaml:3:3: workers.src: .*no-such-plugin" \
    "1 problem$"

roles=$(config roles.yaml <<YAML
plugins_path: [$BUILD/plugins]
workers:
  src: {plugin: mock-source}
  proc: {plugin: mock-processor}
  sink: {plugin: mock-storage, file: $TMP/out}
pipelines:
  p:
    from: proc
    through: [src]
    to: [sink]
error_handlers: [sink]
YAML
)
run "$DCBUS" check "$roles"
expect "plugins used in the wrong role" 2 \
    "roles.yaml:8:11: proc \(plugin mock-processor\) is a processor, but pipeline p \(from\) needs a collector" \
    "roles.yaml:9:14: src \(plugin mock-source\) is a collector, but pipeline p \(through\) needs a processor" \
    "roles.yaml:11:17: sink \(plugin mock-storage\) is a storage sink, but error_handlers needs an error handler" \
    "3 problems$"

undefined=$(config undefined.yaml <<YAML
plugins_path: [$BUILD/plugins]
workers:
  src: {plugin: mock-source}
pipelines:
  p: {from: src, to: [ghost]}
YAML
)
run "$DCBUS" check "$undefined"
expect "a pipeline naming an undefined worker" 2 "undefined.yaml:[0-9]+:[0-9]+: .*ghost"

# Two collectors that would emit one stream: the second is named where its
# stream is decided (its setting, else the worker), the first beside it.
streams=$(config streams.yaml <<YAML
plugins_path: [$BUILD/plugins]
workers:
  t1: {plugin: ticker, stream_prefix: a_}
  t2: {plugin: ticker}
  m1: {plugin: mock-source, stream: prices}
  m2: {plugin: mock-source, stream: a_orderbook}
  m3: {plugin: mock-source, stream: mine}
  sink: {plugin: mock-storage, file: $TMP/s}
pipelines:
  p1: {from: t1, to: [sink]}
  p2: {from: t2, to: [sink]}
  p3: {from: m1, to: [sink]}
  p4: {from: m2, to: [sink]}
  p5: {from: m3, to: [sink]}
YAML
)
run "$DCBUS" check "$streams"
expect "two collectors that would emit the same stream" 2 \
    "streams.yaml:5:37: workers.m1: collector m1 would emit stream 'prices', as collector t2 does \(.*streams.yaml:4:3\)" \
    "streams.yaml:6:37: workers.m2: collector m2 would emit stream 'a_orderbook', as collector t1 does \(.*streams.yaml:3:39\)" \
    "2 problems$"
sed -i "s|stream: prices|stream: p|; s|stream: a_orderbook|stream: o|" "$streams"
run "$DCBUS" check "$streams"
expect "collectors with streams of their own" 0 "ok \(6 workers, 5 pipelines\)"

# --- check: plugin settings against the declared tables ----------------------
settings=$(config settings.yaml <<YAML
plugins_path: [$BUILD/plugins]
workers:
  src:
    plugin: ticker
    replicas: 1
    symbol: [BTC_USDT]
    rate: fast
  sink:
    plugin: csv
    critical: true
    dir: $TMP/csv
    flush: sometimes
  retry:
    plugin: retry
    max_attempts: 0
  store: {plugin: mock-storage}
pipelines:
  p: {from: src, to: [sink, store]}
error_handlers: [retry]
YAML
)
run "$DCBUS" check "$settings"
expect "misspelt, mistyped and out-of-range plugin settings" 2 \
    "settings.yaml:6:5: workers.src.symbol: unknown setting of plugin ticker \(did you mean 'symbols'\?\)" \
    "settings.yaml:7:11: workers.src.rate: expected a number, got \"fast\"" \
    "settings.yaml:12:12: workers.sink.flush: \"sometimes\" is not one of batch\|none" \
    "settings.yaml:15:19: workers.retry.max_attempts: 0 is out of range \[1, 1000000\]" \
    "settings.yaml:16:10: workers.store: missing required setting 'file' of plugin mock-storage" \
    "5 problems$"
if grep -Eq "replicas|critical|plugin:" <<<"$(grep -v 'missing required' <<<"$out")"; then
    fail "host keys (plugin, replicas, critical) taken for plugin settings"
fi

# Durations and sizes (ABI 2.6), lists of durations (2.7): the syntax, the
# range, the words, each item at its own place.
units=$(config units.yaml <<YAML
plugins_path: [$BUILD/plugins]
workers:
  src: {plugin: ticker}
  candles: {plugin: ohlcv, update_every: soon, lateness: -1s, intervals: [1m, 5x, 2d]}
  archive: {plugin: asdf, dir: $TMP/asdf, retention_idle: 7, external_frames: maybe}
pipelines:
  p: {from: src, through: [candles], to: [archive]}
YAML
)
run "$DCBUS" check "$units"
expect "durations and sizes" 2 \
    "units.yaml:4:42: workers.candles.update_every: expected a duration \(0, 500ms, 30s, 5m, 36h, 7d\), got \"soon\"" \
    "units.yaml:4:58: workers.candles.lateness: expected a duration" \
    "units.yaml:5:74: workers.archive.retention_idle: expected a duration .*, got \"7\"" \
    "units.yaml:5:94: workers.archive.external_frames: expected a size \(4096, 64K, 500M, 2G\) or one of true\|false\|yes\|no, got \"maybe\"" \
    "units.yaml:4:79: workers.candles.intervals: expected a duration .*, got \"5x\"" \
    "units.yaml:4:83: workers.candles.intervals: 2d is out of range \[1 s, 86400 s\]" \
    "6 problems$"

# The worker host runs the same check before open(): mock-storage's open()
# creates its file, so a refused instance leaves no file behind.
refused=$(config refused.yaml <<YAML
plugins_path: [$BUILD/plugins]
broker: {bus: "ipc://$TMP/bus"}
workers:
  src: {plugin: mock-source}
  sink: {plugin: mock-storage, file: $TMP/opened, delay_ms: slow}
pipelines:
  p: {from: src, to: [sink]}
YAML
)
run timeout 20 "$BUILD/bin/dcbus-worker" --broker "ipc://$TMP/bus" --instance sink --config "$refused"
expect "a worker refuses a wrong type before open()" 2 \
    "refused.yaml:5:[0-9]+: workers.sink.delay_ms: expected an integer, got" "plugin not opened"
[[ ! -e $TMP/opened ]] || fail "the refused worker ran open(): $TMP/opened exists"
rm -f "$TMP/opened"
sed -i "s|delay_ms: slow|fail_times: -1|" "$refused"
run timeout 20 "$BUILD/bin/dcbus-worker" --broker "ipc://$TMP/bus" --instance sink --config "$refused"
expect "a worker refuses a value out of range before open()" 2 \
    "refused.yaml:5:[0-9]+: workers.sink.fail_times: -1 is out of range: at least 0" "plugin not opened"
[[ ! -e $TMP/opened ]] || fail "the refused worker ran open(): $TMP/opened exists"

# postgres with a setting of the wrong type never connects (its own open()
# would, and refuse the instance only after): a listener stands in
# for the server and records any connection it gets.
if [[ -e $BUILD/plugins/postgres.so ]]; then
    /usr/bin/python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4); s.settimeout(60)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
open(sys.argv[1], "w").write("connected\n")
' "$TMP/pg-connected" >"$TMP/pg-port" &
    listener=$!
    for _ in $(seq 100); do [[ -s $TMP/pg-port ]] && break; sleep 0.1; done
    pgtype=$(config pgtype.yaml <<YAML
plugins_path: [$BUILD/plugins]
broker: {bus: "ipc://$TMP/bus"}
workers:
  src: {plugin: mock-source}
  pg: {plugin: postgres, dsn: "host=127.0.0.1 port=$(cat "$TMP/pg-port") connect_timeout=2", table: t, schema: [a, b]}
pipelines:
  p: {from: src, to: [pg]}
YAML
)
    run timeout 20 "$BUILD/bin/dcbus-worker" --broker "ipc://$TMP/bus" --instance pg --config "$pgtype"
    expect "a postgres worker refuses a wrong type before open()" 2 \
        "pgtype.yaml:5:[0-9]+: workers.pg.schema: expected a string, got a list" "plugin not opened"
    [[ ! -e $TMP/pg-connected ]] || fail "the refused postgres worker connected to the server"
    kill "$listener" 2>/dev/null
    wait "$listener" 2>/dev/null
fi

# --- plugins: the plugin path and one plugin's declared settings -------------
run "$DCBUS" plugins --path "$BUILD/plugins"
expect "dcbus plugins lists the plugin path" 0 "^csv +storage +[0-9.]+ +CSV files" \
    "^ticker +collector " "^retry +handler " "^json-validate +processor "
run "$DCBUS" plugins --config "$demo" csv
expect "dcbus plugins csv prints its settings" 0 "^csv [0-9.]+: CSV files" "^role: storage$" \
    "^  dir +string +data/csv " "^  flush +string +batch +batch\|none " "^  fsync +bool +false " \
    "^  roll_bytes +int +0 +>= 0 "
run "$DCBUS" plugins --path "$BUILD/tests/plugins"
expect "dcbus plugins lists a refused plugin with the loader's reason" 0 \
    "^good +collector +1\.2\.3 +a well-formed test collector" \
    "^abi1 +refused .*built for ABI 1\.1.*rebuild the plugin against ABI 2"
run "$DCBUS" plugins --path "$BUILD/plugins" no-such-plugin
expect "dcbus plugins on an unknown plugin" 1 "no-such-plugin.so not found"

run "$DCBUS" run "$roles"
expect "run refuses an invalid config before starting anything" 2 "nothing started"
run "$DCBUS" run "$settings"
expect "run refuses bad plugin settings before starting anything" 2 \
    "workers.src.symbol: unknown setting of plugin ticker" "nothing started"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
