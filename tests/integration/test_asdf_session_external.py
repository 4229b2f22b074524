"""test_asdf_session_external.py -- test_asdf_session.py with the sink's
external_frames: true: the camera's frames go to <stem>.frames/main.asdf
next to the session's file, through the same kills -9 of the sink and the
broker; python3-asdf reads every frame through the file, and the catalog
and its rebuild have the one session.
"""

import os
import runpy
import sys

sys.argv[1:] = ["--external"]
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_asdf_session.py"),
               run_name="__main__")
