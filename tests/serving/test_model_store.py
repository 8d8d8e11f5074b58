"""Loading bundles: the serving context, its absence, and the BentoML model-store route."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest

from features import contract as c
from models.bundle import CONTEXT_FILE
from serving.model_store import ModelLoadError, load_bundle_dir, load_model
from serving.settings import Settings, SettingsError, load_settings
from tests.serving.helpers import PRIVACY_ENV, ROOT


def test_bundle_without_serving_context_still_loads_with_a_warning(bundle_dir, tmp_path, caplog):
    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    (bundle / CONTEXT_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="serving.model_store"):
        model = load_bundle_dir(bundle)
    assert not model.has_context and model.context.reps == {}
    assert "rep features" in caplog.text
    full = load_bundle_dir(bundle_dir).context
    assert [(f.table, f.column, f.kind) for f in model.context.custom_fields] == \
        [(f.table, f.column, f.kind) for f in full.custom_fields if f.name in model.bundle.spec.names]
    assert any(f.table == c.ACTIVITIES for f in model.context.custom_fields)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no model configured"):
        load_model(Settings())
    with pytest.raises(ModelLoadError, match="no such bundle directory"):
        load_model(Settings(bundle=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a model bundle"):
        load_model(Settings(bundle=str(tmp_path / "empty")))


def test_settings_refuse_bad_numbers():
    assert load_settings({"ACTIVITY_SCORER_MAX_ITEMS": "7", "ACTIVITY_SCORER_RUNTIME_FIXES": "off"}) == \
        Settings(max_items=7, runtime_fixes=False)
    with pytest.raises(SettingsError, match="ACTIVITY_SCORER_MAX_ITEMS='many'"):
        load_settings({"ACTIVITY_SCORER_MAX_ITEMS": "many"})
    with pytest.raises(SettingsError, match="greater than 0"):
        load_settings({"ACTIVITY_SCORER_TIMEOUT_S": "0"})


@pytest.mark.slow
def test_bundle_imported_into_the_bentoml_store_is_served_by_tag(bundle_dir, tmp_path):
    env = {**os.environ, **PRIVACY_ENV, "BENTOML_HOME": str(tmp_path / "bentoml")}
    done = subprocess.run([sys.executable, "-m", "serving.model_store", "import", str(bundle_dir)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tag = done.stdout.strip().splitlines()[-1]
    assert tag.startswith("activity-outcome:")
    probe = ("import json; from serving.model_store import load_model; from serving.settings import load_settings; "
             "m = load_model(load_settings()); print(json.dumps([m.source, m.has_context, m.describe()['name']]))")
    env["ACTIVITY_SCORER_MODEL_TAG"] = tag
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [f"bentoml:{tag}", True, "activity-outcome"]
    env["ACTIVITY_SCORER_MODEL_TAG"] = "activity-outcome:nosuchversion"
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "is not in the local model store" in done.stderr
