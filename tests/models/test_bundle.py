"""The bundle: save -> load -> identical probabilities; encoding by name; format check; variants."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from models.bundle import BUNDLE_FORMAT, MANIFEST_FILE, BundleError, BundleInputError, ModelBundle
from training.config import load_config
from training.data import LoadedData
from training.synthetic import make_training_table
from training.train import run_training


def test_save_load_gives_identical_probabilities_and_contributions(bundle, bundle_dir, table):
    loaded = ModelBundle.load(bundle_dir)
    matrix = loaded.encode(table.frame)
    assert np.array_equal(matrix, bundle.encode(table.frame), equal_nan=True)
    for variant in ("full", "plan"):
        a, b = bundle.predict_proba(matrix, variant), loaded.predict_proba(matrix, variant)
        assert set(a) == {"outcome", "output", "negative"}
        for label in a:
            assert np.array_equal(a[label], b[label])
            assert ((a[label] > 0) & (a[label] < 1)).all()
    contrib = loaded.contributions(matrix[:50], "full", "outcome")
    assert contrib.shape == (50, len(loaded.spec) + 1)
    raw = loaded.predict_raw(matrix[:50], "full", "outcome")
    assert np.allclose(contrib.sum(axis=1), raw)
    assert loaded.manifest.input_fingerprint.startswith("sha256:")
    assert loaded.metrics["labels"]["outcome"]["full"]["test"]["auc"] > 0.6


def test_bundle_files_are_plain(bundle_dir):
    names = {p.name for p in bundle_dir.iterdir()}
    assert {"manifest.json", "feature_spec.json", "calibration.json", "metrics.json",
            "booster_outcome_plan.txt", "booster_outcome_full.txt", "booster_negative_full.txt"} <= names
    spec = json.loads((bundle_dir / "feature_spec.json").read_text())
    levels = {f["name"]: f.get("levels") for f in spec["features"]}
    assert set(levels[c.TYPE]) == {"call", "email", "meeting", "demo", "inmail"}
    assert levels[c.PERSONALIZATION] is None
    cal = json.loads((bundle_dir / "calibration.json").read_text())
    assert cal["outcome"]["full"]["method"] in ("isotonic", "sigmoid")


def test_unknown_major_format_is_refused(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["bundle_format"] = "2.0"
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="bundle_format 2.0 is not supported"):
        ModelBundle.load(copy)
    manifest["bundle_format"] = BUNDLE_FORMAT.split(".")[0] + ".7"  # a newer minor is fine
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    ModelBundle.load(copy)
    with pytest.raises(BundleError, match="not a model bundle"):
        ModelBundle.load(tmp_path)


def test_encoding_is_by_name_and_handles_unseen_and_missing_values(bundle, table):
    frame = table.frame.head(300)
    shuffled = frame[list(reversed(frame.columns))]
    assert np.array_equal(bundle.encode(frame), bundle.encode(shuffled), equal_nan=True)
    odd = frame.copy()
    odd.loc[odd.index[:3], c.TYPE] = "carrier_pigeon"
    odd.loc[odd.index[3:5], c.TYPE] = pd.NA
    matrix, unseen = bundle.encode_report(odd)
    j = bundle.spec.names.index(c.TYPE)
    assert np.isnan(matrix[:5, j]).all()
    assert unseen == {c.TYPE: 3}
    # small frames take the dict path: same answer
    small, small_unseen = bundle.encode_report(odd.head(10))
    assert np.array_equal(small, matrix[:10], equal_nan=True) and small_unseen == {c.TYPE: 3}
    p = bundle.predict_proba(matrix)["outcome"]
    assert np.isfinite(p).all()


def test_encoding_chosen_rows_equals_taking_them_from_the_whole_matrix(bundle, table):
    frame = table.frame.head(3000).copy()
    frame.loc[frame.index[[5, 17, 2500]], c.TYPE] = "carrier_pigeon"
    rows = np.random.default_rng(4).permutation(len(frame))[:2200]  # out of order, some rows left out
    spec = bundle.spec
    whole, _ = spec.encode_report(frame)
    part, unseen = spec.encode_report(frame, rows=rows)
    assert part.shape == (len(rows), len(spec))
    assert np.array_equal(part, whole[rows], equal_nan=True)
    assert unseen == {c.TYPE: int(np.isin(rows, [5, 17, 2500]).sum())}
    assert np.array_equal(spec.encode(frame, rows=rows[:8]), whole[rows[:8]], equal_nan=True)  # the small path


def test_encoding_errors_name_the_columns(bundle, table):
    with pytest.raises(BundleInputError, match=f"lacks 1 model column.*{c.PERSONALIZATION}"):
        bundle.encode(table.frame.drop(columns=[c.PERSONALIZATION]))
    bad = table.frame.head(5).astype({c.PERSONALIZATION: object})
    bad.loc[bad.index[2], c.PERSONALIZATION] = "very"
    with pytest.raises(BundleInputError, match="personalization.*'very'"):
        bundle.encode(bad)
    with pytest.raises(BundleInputError, match="columns in spec order"):
        bundle.predict_proba(np.zeros((2, 3)))


def test_plan_variant_ignores_execution_time_features(bundle, table):
    frame = table.frame.head(500)
    matrix = bundle.encode(frame)
    changed = matrix.copy()
    j = bundle.spec.names.index(c.DURATION_S)
    changed[:, j] = 3600.0
    plan_a, plan_b = bundle.predict_proba(matrix, "plan"), bundle.predict_proba(changed, "plan")
    assert all(np.array_equal(plan_a[k], plan_b[k]) for k in plan_a)
    full_a, full_b = bundle.predict_proba(matrix, "full"), bundle.predict_proba(changed, "full")
    assert not np.array_equal(full_a["output"], full_b["output"])  # duration matters once it happened


def test_without_execution_features_full_is_the_plan_model(tmp_path):
    t = make_training_table(4000, seed=3, drop_execution=True)
    result = run_training(LoadedData(t), load_config())
    assert result.bundle.manifest.variants == {"plan": "plan", "full": "plan"}
    path = result.bundle.save(tmp_path / "b")
    assert not list(path.glob("booster_*_full.txt"))
    loaded = ModelBundle.load(path)
    m = loaded.encode(t.frame.head(100))
    assert np.array_equal(loaded.predict_proba(m, "full")["outcome"], loaded.predict_proba(m, "plan")["outcome"])
    with pytest.raises(ValueError, match="unknown variant"):
        loaded.predict_proba(m, "draft")


def test_calibrated_output_is_monotone_in_the_raw_score(bundle, table):
    matrix = bundle.encode(table.frame)
    raw = bundle.predict_raw(matrix, "full", "outcome")
    p = bundle.predict_proba(matrix, "full")["outcome"]
    order = np.argsort(raw)
    assert np.all(np.diff(p[order]) >= 0)


def test_saving_over_an_earlier_bundle_leaves_none_of_its_files(bundle, tmp_path):
    path = bundle.save(tmp_path / "b")
    (path / "ranking").mkdir()  # e.g. an earlier run's ranking model
    (path / "ranking" / "model.txt").write_text("stale", encoding="utf-8")
    (path / "booster_outcome_other.txt").write_text("stale", encoding="utf-8")
    bundle.save(path)
    assert not (path / "ranking").exists() and not (path / "booster_outcome_other.txt").exists()
    assert ModelBundle.load(path).manifest.to_dict() == bundle.manifest.to_dict()


def test_saving_into_a_directory_that_is_not_a_bundle_is_refused(bundle, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(BundleError, match="not empty and not a model bundle"):
        bundle.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "keep me"
