#!/usr/bin/env bash
# test_docs_plugin_example.sh -- the complete plugin of the plugin guide
# (plugins/README.md: the C block with DCBUS_PLUGIN_DESCRIPTION) compiles
# against dcbus/plugin.h alone with warnings as errors, loads, and shows
# the settings it declares.
set -uo pipefail

BUILD=${DCBUS_BUILD_DIR:?run through ctest, or set DCBUS_BUILD_DIR}
SOURCE=${DCBUS_SOURCE_DIR:?run through ctest, or set DCBUS_SOURCE_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failed=0

awk '/^```c$/ { n++; f = 1; next } /^```/ { f = 0 } f { print > (dir "/block" n ".c") }' \
    dir="$TMP" "$SOURCE/plugins/README.md"
example=$(grep -l DCBUS_PLUGIN_DESCRIPTION "$TMP"/block*.c | head -1)
if [[ -z $example ]]; then
    echo "FAIL: no C block with DCBUS_PLUGIN_DESCRIPTION in plugins/README.md"
    exit 1
fi
mkdir "$TMP/plugins"
if cc -shared -fPIC -std=gnu11 -Wall -Wextra -Werror -I"$SOURCE/common/include" \
    -o "$TMP/plugins/hello.so" "$example"; then
    echo "ok: the guide's plugin compiles"
else
    echo "FAIL: the guide's plugin does not compile"
    failed=1
fi
out=$("$BUILD/bin/dcbus" plugins --path "$TMP/plugins" hello 2>&1)
if grep -Eq "^role: collector$" <<<"$out" && grep -Eq "^  count +int +3 " <<<"$out"; then
    echo "ok: it loads and declares its settings"
else
    echo "FAIL: dcbus plugins hello:"
    printf '%s\n' "$out" | sed 's/^/    | /'
    failed=1
fi
[[ $failed -eq 0 ]]
