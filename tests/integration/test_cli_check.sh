#!/usr/bin/env bash
# test_cli_check.sh -- the command line's own surface: --help and --version
# of every program, `dcbus check` on the demo config and on broken ones
# (exit status 0 or 2, and a message naming file:line:column).
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
for cmd in run check stats; do
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

run "$DCBUS" run "$roles"
expect "run refuses an invalid config before starting anything" 2 "nothing started"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
