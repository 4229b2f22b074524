#!/usr/bin/env bash
# test_plugin_readmes.sh -- every plugin's README settings table agrees with
# the table the plugin declares: the same keys with the same defaults, as
# `dcbus plugins NAME --markdown` prints them.  The README table is the
# first one whose header starts "| key | default |".
set -uo pipefail

BUILD=${DCBUS_BUILD_DIR:?run through ctest, or set DCBUS_BUILD_DIR}
SOURCE=${DCBUS_SOURCE_DIR:?run through ctest, or set DCBUS_SOURCE_DIR}

# settings_rows: reads a markdown document on stdin, prints "key<TAB>default"
# for each row of its first settings table (backticks around the key removed).
settings_rows() {
    awk -F'|' '
        /^\| *key *\| *default *\|/ { inside = 1; next }
        inside && /^\|---/ { next }
        inside && /^\|/ {
            key = $2; dflt = $3
            gsub(/^ +| +$/, "", key); gsub(/^ +| +$/, "", dflt); gsub(/`/, "", key)
            print key "\t" dflt; next
        }
        inside { exit }'
}

passed=0
failed=0
checked=0
for readme in "$SOURCE"/plugins/*/*/README.md; do
    name=$(basename "$(dirname "$readme")")
    [[ -e $BUILD/plugins/$name.so ]] || continue
    checked=$((checked + 1))
    declared=$("$BUILD/bin/dcbus" plugins --path "$BUILD/plugins" --markdown "$name" | settings_rows)
    documented=$(settings_rows <"$readme")
    if [[ -z $declared && -z $documented ]] || [[ $declared == "$documented" ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $name: README settings table differs from the declared one (< README, > declared)"
        diff <(printf '%s\n' "$documented") <(printf '%s\n' "$declared") | sed 's/^/    /'
    fi
done
[[ $checked -ge 10 ]] || { echo "FAIL: only $checked plugins found in $BUILD/plugins"; failed=$((failed + 1)); }
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
