"""Shared test setup: privacy defaults and isolated stores for every test session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

# Every test process gets a data home of its own, set before any app or store is created: without
# it, in-process services appended their prediction logs to the user's ./.activity-scorer (seen on a
# fresh clone after `make demo`: test records mixed into the demo's log, which `monitor` and
# `evaluate-policy` read). Tests that need a particular home still set theirs.
_TEST_HOME = tempfile.mkdtemp(prefix="activity-scorer-test-home-")
os.environ["ACTIVITY_SCORER_HOME"] = _TEST_HOME
atexit.register(shutil.rmtree, _TEST_HOME, ignore_errors=True)
