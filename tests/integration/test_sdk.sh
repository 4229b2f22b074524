#!/usr/bin/env bash
# test_sdk.sh -- the installed SDK, used as a plugin author outside the
# source tree would use it:
#   - `cmake --install` of this build into a fresh prefix P puts the
#     headers, the testkit, the .pc files, the programs and the plugins
#     there, and the .pc files point into P (not the configure-time prefix);
#   - examples/plugin, copied out of the source tree, configures and builds
#     with PKG_CONFIG_PATH=P/lib/pkgconfig and nothing else in its
#     environment, no compile command of it names the source tree, and its
#     unit test (against the installed testkit) passes;
#   - P's `dcbus check` accepts a config using it, and P's programs run
#     ticker -> scale (the example: price x 100 into price_cents) -> csv,
#     plugins_path = [P's plugins, the example's build dir]: every tick
#     arrives once, in order, each with price_cents = price x 100.
# `scripts/test-sdk` builds dcbus and runs this on its own.
. "$(dirname "$0")/lib.sh"

SRC=$(cd "${DCBUS_SOURCE_DIR:?run through ctest, or set DCBUS_SOURCE_DIR}" && pwd) || exit 1
P=$TMP/P
EXAMPLE=$TMP/example
TICKS=20000

# sdk_env COMMAND...: COMMAND with no environment but a PATH and the one
# variable a plugin author sets.
sdk_env() { env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$TMP" PKG_CONFIG_PATH="$P/lib/pkgconfig" "$@"; }

# --- install
cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1 || die "cmake --install into $P"
missing=""
for f in include/dcbus/plugin.h include/dcbus/testkit.h include/dcbus/envelope.h \
    lib/libdcbus-testkit.a lib/pkgconfig/dcbus.pc lib/pkgconfig/dcbus-testkit.pc \
    bin/dcbus bin/dcbus-broker bin/dcbus-worker lib/dcbus/plugins/ticker.so lib/dcbus/plugins/csv.so; do
    [[ -e $P/$f ]] || missing+=" $f"
done
check "installed: headers, testkit, .pc files, programs, plugins${missing:+ (missing:$missing)}" \
    test -z "$missing"

# in_prefix PATH: PATH, however pkg-config spelt it, exists under P.
in_prefix() {
    local real
    real=$(realpath -e "$1" 2>/dev/null) && [[ $real == "$(realpath "$P")"/* ]]
}
includedir=$(sdk_env pkg-config --cflags-only-I dcbus | sed 's/^-I//; s/ *$//')
check "pkg-config --cflags dcbus points into the prefix: $includedir" in_prefix "$includedir"
plugindir=$(sdk_env pkg-config --variable=plugindir dcbus)
check "pkg-config --variable=plugindir dcbus is the installed plugins folder" \
    in_prefix "$plugindir/ticker.so"

# --- the example, out of tree
mkdir -p "$EXAMPLE"
cp "$SRC"/examples/plugin/CMakeLists.txt "$SRC"/examples/plugin/*.c "$EXAMPLE"/
sdk_env cmake -S "$EXAMPLE" -B "$EXAMPLE/build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    >"$TMP/example-configure.log" 2>&1 || { cat "$TMP/example-configure.log"; die "the example configures with pkg-config alone"; }
sdk_env cmake --build "$EXAMPLE/build" >"$TMP/example-build.log" 2>&1 ||
    { cat "$TMP/example-build.log"; die "the example builds with pkg-config alone"; }
ok "the example configures and builds with PKG_CONFIG_PATH=$P/lib/pkgconfig alone"
check "no compile command of the example names the source tree" \
    test "$(grep -c -F "$SRC" "$EXAMPLE/build/compile_commands.json")" = 0
if sdk_env ctest --test-dir "$EXAMPLE/build" -V >"$TMP/example-test.log" 2>&1; then
    ok "the example's testkit test passes ($(grep -c ' ok: ' "$TMP/example-test.log") checks)"
else
    cat "$TMP/example-test.log"
    not_ok "the example's testkit test passes"
fi

# --- the example in a pipeline, on the installed programs
BIN=$P/bin
CFG=$TMP/bus.yaml
cat >"$CFG" <<YAML
broker: {bus: $BUS, topics: $TOPICS, heartbeat_ms: 200, spool: $TMP/spool}
plugins_path: [$P/lib/dcbus/plugins, $EXAMPLE/build]
workers:
  ticker: {plugin: ticker, symbols: [BTC_USDT, ETH_USDT], limit: $TICKS, orderbook: false,
           seed: 7, start_ts: 1700000000000000}
  cents: {plugin: scale, field: price, factor: 100, to: price_cents}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  ticks: {from: ticker, through: [cents], to: [csv]}
YAML
check "the installed dcbus check finds the example on the plugins path and accepts it as a processor" \
    "$BIN/dcbus" check "$CFG"
broker "$CFG"
worker csv "$CFG"
worker cents "$CFG"
wait_joined csv && wait_joined cents || die "the sink and the example processor join the broker"
worker ticker "$CFG"
wait_exit ticker 120 || die "the ticker finishes its $TICKS ticks within 120 s"
check "the ticker exits 0" test "${STATUS[ticker]}" = 0
check_delivered 60 "every batch reaches the sink"
stop cents
stop csv
check "the example processor stops cleanly" test "${STATUS[cents]}" = 0

prices=$(session_file "$TMP/csv" prices)
[[ -n $prices && -f $prices ]] || die "the sink wrote a prices file"
exactly_once "$prices" "$TICKS"
out=$("$PY" - "$prices" <<'PY'
import csv, sys
with open(sys.argv[1], newline="") as f:
    rows = list(csv.DictReader(f))
if not rows or "price_cents" not in rows[0]:
    sys.exit("no price_cents column")
bad = [r for r in rows if abs(float(r["price_cents"]) - float(r["price"]) * 100)
       > 1e-9 * abs(float(r["price"]) * 100)]
print("%d rows, %d without price_cents = price x 100%s"
      % (len(rows), len(bad), ", first: %s" % bad[0] if bad else ""))
sys.exit(1 if bad else 0)
PY
)
rc=$?
check "the records the example changed arrived: $out" test "$rc" = 0

finish
