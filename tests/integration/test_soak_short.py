"""test_soak_short.py -- scripts/soak's run for 3 simulated days: hourly
idle sessions and two named sessions a day on the test clock, the csv sink
killed -9 on day 1, the broker on day 2, json-validate restarted on day 3.
The pipeline also feeds a critical: false postgres sink (a throwaway
server; the test fails without PostgreSQL's binaries).  Fails if a tick
is lost or doubled in the csv or in PostgreSQL, a folder with data is not
a session's own, idle sessions do not rotate hourly, or a process's
memory or descriptors, the checkpoint, the spool or a sink's flush time
grow (soak.py says how)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak  # noqa: E402

sys.argv = [sys.argv[0], "--days", "3"]
sys.exit(soak.Soak(soak.parse_args()).run())
