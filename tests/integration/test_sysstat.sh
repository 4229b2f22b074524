#!/usr/bin/env bash
# test_sysstat.sh -- sysstat samples the host's counters as records of the
# one shape its README documents.  sysstat (5 samples, 100 ms apart) -> csv.
# It checks that
#   - the collector finishes after its 5 samples, and the CSV's header is
#     the documented field list: ts,host,group,device,metric,value,kind;
#   - each of the 5 samples (a ts each) has the cpu, memory, load and net
#     groups (and disk, when /sys/block has a disk that is not loop or ram);
#   - values are what /proc says they are: memory total is MemTotal x 1024,
#     the "all" CPU has user/system/idle seconds, counters are "counter"
#     and memory/load values "gauge".
. "$(dirname "$0")/lib.sh"

{
    config_head
    cat <<YAML
workers:
  stats: {plugin: sysstat, interval_ms: 100, limit: 5, host: testhost}
  csv: {plugin: csv, dir: $TMP/csv}
pipelines:
  p: {from: stats, to: [csv]}
YAML
} >"$TMP/bus.yaml"

broker "$TMP/bus.yaml"
worker csv "$TMP/bus.yaml"
wait_joined csv || die "the sink joins the broker"
worker stats "$TMP/bus.yaml"
wait_exit stats 30 || die "sysstat finishes its 5 samples"
check "sysstat exits 0" test "${STATUS[stats]}" -eq 0
wait_delivered 30 || die "the samples are delivered (in flight: $IN_FLIGHT)"
stop csv
file=$(session_file "$TMP/csv" sysstat)
[[ -n $file && -s $file ]] || die "the sysstat stream has a CSV file"

disks=0
for d in /sys/block/*; do
    case ${d##*/} in loop* | ram*) ;; *) disks=1 ;; esac
done
memtotal=$(awk '$1 == "MemTotal:" { printf "%.0f", $2 * 1024 }' /proc/meminfo)
report "$("$PY" - "$file" "$disks" "$memtotal" <<'PY'
import csv, sys
path, disks, memtotal = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
with open(path, newline="") as f:
    reader = csv.reader(f)
    header = next(reader)
    rows = [dict(zip(header, r)) for r in reader]
def say(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
say(header == ["ts", "host", "group", "device", "metric", "value", "kind"],
    "the header is the documented shape (%s)" % ",".join(header))
samples = sorted({r["ts"] for r in rows})
say(len(samples) == 5, "5 samples (%d distinct ts)" % len(samples))
want = {"cpu", "memory", "load", "net"} | ({"disk"} if disks else set())
for ts in samples:
    got = {r["group"] for r in rows if r["ts"] == ts}
    if not want <= got:
        say(False, "sample %s has groups %s, expected %s" % (ts, sorted(got), sorted(want)))
        break
else:
    say(True, "every sample has the groups %s" % ",".join(sorted(want)))
say(all(r["host"] == "testhost" for r in rows), "the host field is the setting's")
mem = [float(r["value"]) for r in rows if r["group"] == "memory" and r["metric"] == "total"]
say(mem and all(v == memtotal for v in mem), "memory total is MemTotal (%s)" % mem[:1])
cpu = {r["metric"] for r in rows if r["group"] == "cpu" and r["device"] == "all"}
say({"user", "system", "idle"} <= cpu, "the all-CPU times: %s" % ",".join(sorted(cpu)))
kinds = {(r["group"], r["kind"]) for r in rows}
say(all(k == ("gauge" if g in ("memory", "load") else "counter") for g, k in kinds),
    "counters and gauges as documented (%s)" % sorted(kinds))
PY
)"
finish
