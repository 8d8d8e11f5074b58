"""MLflow round trip: log, register (challenger), alias champion, load models:/NAME@champion, same probabilities."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from models.bundle import ModelBundle
from models.pyfunc import input_example
from training import tracking


@pytest.fixture
def registered(trained, table, model_name, tmp_path):
    result = dataclasses.replace(trained, config=dataclasses.replace(trained.config, registered_model=model_name))
    bundle_dir = result.bundle.save(tmp_path / "bundle")
    return tracking.log_training(result, bundle_dir, table.frame, tmp_path, [])


def test_round_trip_through_the_registry(registered, trained, table, model_name, tmp_path):
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(model_name, "challenger").version) == registered.version
    run = client.get_run(registered.run_id)
    assert run.data.params["lightgbm.learning_rate"] == str(trained.config.lightgbm.learning_rate)
    assert run.data.tags["data.fingerprint"] == trained.fingerprint
    assert run.data.tags["data.test_start"] == trained.bundle.manifest.data_window["test_start"]
    assert run.data.metrics["outcome_full_auc"] == pytest.approx(trained.fits[("outcome", "full")].metrics["test"]["auc"])
    assert "outcome_full_type_call_auc" in run.data.metrics
    assert run.data.metrics["outcome_full_oracle_gap"] == pytest.approx(
        trained.fits[("outcome", "full")].metrics["truth"]["oracle_gap"])

    tracking.set_alias(model_name, "champion", registered.version)
    model = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
    frame = table.frame.sample(400, random_state=0)
    served = model.predict(frame[trained.bundle.spec.names])
    direct = trained.bundle.predict_frame(frame)
    assert list(served.columns) == ["p_outcome", "p_output", "p_negative"]
    assert np.array_equal(served.to_numpy(), direct.to_numpy())
    plan = model.predict(frame[trained.bundle.spec.names], params={"variant": "plan"})
    assert np.array_equal(plan.to_numpy(), trained.bundle.predict_frame(frame, "plan").to_numpy())

    bundle, fetched = tracking.load_bundle(f"models:/{model_name}@champion", tmp_path / "dl")
    assert (fetched.name, fetched.version) == (model_name, registered.version)
    assert bundle.manifest.model_version == registered.version and bundle.manifest.run_id == registered.run_id
    assert np.array_equal(bundle.predict_frame(frame).to_numpy(), direct.to_numpy())
    by_run, _ = tracking.load_bundle(f"runs:/{registered.run_id}", tmp_path / "dl2")
    assert np.array_equal(by_run.predict_frame(frame).to_numpy(), direct.to_numpy())


def test_signature_and_input_example_validate(registered, trained, table):
    model = mlflow.pyfunc.load_model(registered.model_uri)
    signature = model.metadata.signature
    assert [c.name for c in signature.inputs.inputs] == trained.bundle.spec.names
    assert [c.name for c in signature.outputs.inputs] == ["p_outcome", "p_output", "p_negative"]
    example = model.input_example
    assert example is not None and len(example) == len(input_example(trained.bundle, table.frame))
    out = model.predict(example)  # schema enforcement against the signature runs here
    assert list(out.columns) == ["p_outcome", "p_output", "p_negative"] and out.notna().all().all()


def test_plots_and_bundle_are_run_artifacts(registered):
    client = MlflowClient()
    top = {a.path for a in client.list_artifacts(registered.run_id)}
    assert {"bundle", "metrics.json", "leakage.json"} <= top


def test_bad_uris_are_clear_errors(tmp_path, model_name):
    with pytest.raises(tracking.TrackingError, match="no such bundle directory"):
        tracking.fetch_bundle(str(tmp_path / "nope"), tmp_path / "x")
    with pytest.raises(tracking.TrackingError, match="not a model bundle"):
        tracking.fetch_bundle(str(tmp_path), tmp_path / "x")
    with pytest.raises(Exception, match=model_name):
        tracking.fetch_bundle(f"models:/{model_name}@champion", tmp_path / "x")


def test_a_local_bundle_directory_is_a_model_uri(trained, tmp_path, table):
    path = trained.bundle.save(tmp_path / "b")
    bundle, fetched = tracking.load_bundle(str(path), tmp_path / "copy")
    assert fetched.version is None
    assert isinstance(bundle, ModelBundle)
    pd.testing.assert_frame_equal(bundle.predict_frame(table.frame.head(20)), trained.bundle.predict_frame(table.frame.head(20)))
