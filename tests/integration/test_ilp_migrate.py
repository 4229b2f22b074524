"""test_ilp_migrate.py -- `dcbus migrate` for an ilp instance against a
real InfluxDB 1.6, and the refusal of an instance whose database is not
there.

With `migrate: manual` and no database, the ilp worker must be refused for
good (exit 2, the server's "database not found" in its log), not retry.
`dcbus migrate` must list the database and the retention policy as
pending and change nothing; with --yes it must create both (the policy
the default, with its duration), record each in schema_migrations, and
list them as applied afterwards.  Then the same worker starts and stays.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import influx_env  # noqa: E402
import lib  # noqa: E402

srv = influx_env.Influx()
bus = lib.Bus()
config = bus.write("c.yaml", bus.config_head() + """
workers:
  ticks: {plugin: ticker, limit: 10}
  ilp:   {plugin: ilp, url: "%s", db: mig, rp: week, rp_duration: 7d, migrate: manual}
pipelines:
  p: {from: ticks, to: [ilp]}
""" % srv.url)


def migrate(*args):
    p = subprocess.run([os.path.join(bus.bin, "dcbus"), "migrate", config] + list(args),
                       capture_output=True, text=True, timeout=60, cwd=bus.dir)
    return p.returncode, p.stdout + p.stderr


def databases():
    rows = srv.points("SHOW DATABASES")
    return [r["name"] for r in rows]


bus.broker(config)
bus.worker("ilp", config)
status = bus.wait("ilp", 30)
bus.check("without its database the worker is refused for good (exit 2)", status == 2,
          "exit %s" % status)
bus.check("it says the database is not found", "database not found" in bus.log("ilp"))

rc, out = migrate()
bus.check("dcbus migrate lists both migrations as pending", rc == 0 and
          out.count("pending") >= 2 and "001_create_database" in out and
          "002_retention_policy" in out, out)
bus.check("and changes nothing", "mig" not in databases(), databases())

rc, out = migrate("--yes")
bus.check("dcbus migrate --yes applies them", rc == 0 and "2 applied" in out, out)
bus.check("the database is there", "mig" in databases(), databases())
rps = srv.points('SHOW RETENTION POLICIES ON "mig"')
week = [r for r in rps if r["name"] == "week"]
bus.check("the retention policy is there, the default, 7 days",
          week and week[0]["default"] and week[0]["duration"] == "168h0m0s", rps)
recorded = srv.points('SELECT * FROM "mig"."autogen"."schema_migrations"')
bus.check("both are recorded in schema_migrations",
          sorted(r["version"] for r in recorded) == ["001", "002"], recorded)

rc, out = migrate()
bus.check("listed as applied afterwards, nothing pending",
          rc == 0 and out.count("applied") >= 2 and "nothing pending" in out, out)

bus.worker("ilp", config)
time.sleep(1.5)
bus.check("now the worker starts and stays", bus.procs["ilp"].poll() is None, bus.log("ilp")[-500:])
bus.check("it stops cleanly", bus.stop("ilp") == 0)
srv.close()
bus.finish()
