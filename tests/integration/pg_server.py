"""pg_server.py -- a throwaway PostgreSQL server for Python tests, as
pg_env.sh is for the shell ones: initdb in a temporary directory, started
on a free loopback port (unix socket inside the directory), a database
`dcbus`, stopped and removed by stop() or at exit.  As root (CI) the
cluster is owned and run by the `postgres` user: initdb refuses root.

    pg = pg_server.PgServer()          # RuntimeError if it cannot start
    pg.dsn                             # postgresql://dcbus@127.0.0.1:PORT/dcbus
    pg.sql("SELECT 1")                 # psql's unaligned output, stripped
    pg.pid()                           # the postmaster's pid
"""

import atexit
import os
import shutil
import subprocess
import tempfile

import lib

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def missing():
    """Why no server can be started here, or None."""
    for tool in ("initdb", "pg_ctl", "createdb", "psql"):
        if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
            return ("no %s in %s: PostgreSQL's server binaries are missing "
                    "(scripts/setup installs them; PG_BIN names another place)" % (tool, PG_BIN))
    return None




class PgServer:
    def __init__(self):
        why = missing()
        if why:
            raise RuntimeError(why)
        self.dir = tempfile.mkdtemp(prefix="dcbus-pg.", dir="/tmp")
        self.data = os.path.join(self.dir, "data")
        self.as_user = []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = lib.free_port()
        self.dsn = "postgresql://dcbus@127.0.0.1:%d/dcbus" % self.port
        atexit.register(self.stop)
        self.run("initdb", "-D", self.data, "-U", "dcbus", "--auth=trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1" % (self.port, self.dir)
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w",
                 "-o", opts, "start")
        self.run("createdb", "-h", self.dir, "-p", str(self.port), "-U", "dcbus", "dcbus")

    def run(self, tool, *args):
        r = subprocess.run(self.as_user + [os.path.join(PG_BIN, tool)] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (tool, r.stdout.strip()[-2000:]))
        return r.stdout

    def sql(self, query):
        return subprocess.run([os.path.join(PG_BIN, "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1",
                               "-d", self.dsn, "-c", query], check=True,
                              stdout=subprocess.PIPE, text=True).stdout.strip()

    def pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return 0

    def stop(self):
        if not self.dir:
            return
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            subprocess.call(self.as_user + [os.path.join(PG_BIN, "pg_ctl"), "-D", self.data,
                                            "-m", "fast", "-w", "stop"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
