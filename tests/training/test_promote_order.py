"""Promotion writes the version's tags first and moves the champion alias last (the commit point).

A service that follows ``champion`` may load a version the moment the alias points at it, so a
failure part-way through a promotion must leave the alias where it was, never on a version
whose tags do not record its promotion.
"""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from training import promote as promote_mod
from training import tracking
from training.promote import PromotionDecision, PromotionError


@pytest.fixture
def registry(tmp_path, model_name):
    """``model_name`` with versions 1 and 2 (each from a run of its own), ``champion`` on 1."""
    client = MlflowClient()
    client.create_registered_model(model_name)
    runs = {}
    for v in ("1", "2"):
        with mlflow.start_run() as run:
            runs[v] = run.info.run_id
        src = tmp_path / f"model-{v}"
        src.mkdir()
        client.create_model_version(model_name, str(src), run_id=runs[v])
    client.set_registered_model_alias(model_name, "champion", "1")
    return client, runs


def _decision(name: str) -> PromotionDecision:
    return PromotionDecision(name, "2", "1", {"start": "2026-01-01", "end": "2026-02-01"}, {}, None)


def _champion(client, name) -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def _failing_after(n_ok: int, original):
    calls = {"n": 0}

    def method(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise MlflowException("simulated registry outage")
        return original(self, *args, **kwargs)

    return method


def test_tags_are_written_before_the_alias_moves(registry, model_name, monkeypatch):
    client, runs = registry
    order = []
    for name in ("tag_version", "tag_run", "set_alias"):
        real = getattr(tracking, name)
        monkeypatch.setattr(tracking, name, lambda *a, _real=real, _name=name: (order.append(_name), _real(*a))[1])
    decision = _decision(model_name)
    promote_mod._promote(decision, runs["2"], False, None)

    assert order == ["tag_version", "tag_run", "set_alias"]
    assert decision.promoted and _champion(client, model_name) == "2"
    tags = client.get_model_version(model_name, "2").tags
    assert tags["previous_champion"] == "1" and tags["forced_promotion"] == "false" and tags["promoted_at"]
    assert client.get_run(runs["2"]).data.tags["promoted_by"] == tags["promoted_by"]


@pytest.mark.parametrize("ok_before_failure", [0, 2])  # the first tag, or part-way through the tags
def test_a_failure_while_tagging_the_version_leaves_the_alias_where_it_was(registry, model_name, monkeypatch,
                                                                           ok_before_failure):
    client, runs = registry
    monkeypatch.setattr(MlflowClient, "set_model_version_tag",
                        _failing_after(ok_before_failure, MlflowClient.set_model_version_tag))
    decision = _decision(model_name)
    with pytest.raises(PromotionError) as err:
        promote_mod._promote(decision, runs["2"], False, None)
    assert f"recording the promotion of {model_name} v2" in str(err.value)
    assert "still points where it did" in str(err.value) and "simulated registry outage" in str(err.value)
    assert _champion(client, model_name) == "1" and not decision.promoted
    assert "promoted_at" not in client.get_run(runs["2"]).data.tags  # the run was not tagged either


def test_a_failure_while_tagging_the_run_leaves_the_alias_where_it_was(registry, model_name, monkeypatch):
    client, runs = registry
    monkeypatch.setattr(MlflowClient, "set_tag", _failing_after(1, MlflowClient.set_tag))
    with pytest.raises(PromotionError, match="still points where it did"):
        promote_mod._promote(_decision(model_name), runs["2"], True, "outage drill")
    assert _champion(client, model_name) == "1"


def test_a_failure_moving_the_alias_is_a_clear_error_and_moves_nothing(registry, model_name, monkeypatch):
    client, runs = registry
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias",
                        _failing_after(0, MlflowClient.set_registered_model_alias))
    with pytest.raises(PromotionError, match=r"moving the champion alias to .* v2: it still points where it did"):
        promote_mod._promote(_decision(model_name), runs["2"], False, None)
    assert _champion(client, model_name) == "1"


@pytest.mark.slow
def test_the_promote_command_reports_a_registry_failure_in_one_line(tmp_path, fake_loader, model_name, monkeypatch):
    from training.cli import app

    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(app, ["train", "--data", str(tmp_path), "--model-name", model_name, "--json"])
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == "2"
    assert runner.invoke(app, ["promote", "--version", "1", "--model-name", model_name, "--force",
                               "--reason", "setup"]).exit_code == 0
    monkeypatch.setattr(MlflowClient, "set_model_version_tag",
                        _failing_after(1, MlflowClient.set_model_version_tag))
    result = runner.invoke(app, ["promote", "--version", "2", "--model-name", model_name, "--force",
                                 "--reason", "drill"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and not isinstance(result.exception, MlflowException)
    assert f"promote: the registry failed while recording the promotion of {model_name} v2" in result.output
    assert _champion(MlflowClient(), model_name) == "1"
