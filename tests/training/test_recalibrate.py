"""recalibrate and monitor end to end (issue 15): a base rate that moves after training is mended by recalibration."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.dataset import write_dataset
from training.cli import app

pytestmark = pytest.mark.slow
T0 = pd.Timestamp("2026-01-05T09:00:00Z")


def leads(n: int = 9000, days: int = 70, shift_day: int = 45, shift: float = 1.2, seed: int = 0):
    """One lead per row (its own deal), converted one second after the call; conversions jump after ``shift_day``."""
    rng = np.random.default_rng(seed)
    age = np.sort(rng.uniform(0, days, n))
    occurred = T0 + pd.to_timedelta(age * 86400, unit="s")
    score = rng.normal(0, 1, n)
    p = 1 / (1 + np.exp(-(-2.2 + 1.2 * score + np.where(age >= shift_day, shift, 0.0))))
    y = rng.random(n) < p
    ids = [f"row-{i}" for i in range(n)]
    acts = pd.DataFrame({c.ACTIVITY_ID: ids, c.OCCURRED_AT: occurred, c.TYPE: "call",
                         c.DEAL_ID: [f"deal-{i}" for i in ids], "lead_score": score})
    outcomes = pd.DataFrame({c.DEAL_ID: acts.loc[y, c.DEAL_ID].to_numpy(), c.OUTCOME: "converted",
                             c.OCCURRED_AT: occurred[y] + pd.Timedelta(seconds=1)})
    return {c.ACTIVITIES: acts, c.DEALS: pd.DataFrame({c.DEAL_ID: acts[c.DEAL_ID], c.CREATED_AT: occurred}),
            c.OUTCOMES: outcomes}


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result


def test_recalibration_mends_a_moved_base_rate_and_monitor_sees_it(tmp_path):
    data = tmp_path / "leads"
    write_dataset(leads(), data)
    name = "leads-recal"
    until = (T0 + pd.Timedelta(days=45)).isoformat()
    r = run("train", "--data", str(data), "--until", until, "--model-name", name, "--json")
    assert r.exit_code == 0, r.output
    r = run("promote", "--model-name", name)
    assert r.exit_code == 0, r.output
    since = (T0 + pd.Timedelta(days=45)).date().isoformat()
    before = tmp_path / "before.json"
    r = run("monitor", "--data", str(data), "--since", since, "--out", str(tmp_path / "before.html"),
            "--json", str(before), "--model", f"models:/{name}@champion")
    assert r.exit_code == 0, r.output
    doc = json.loads(before.read_text())
    assert doc["verdict"] == "recalibrate", doc["reasons"]
    assert (tmp_path / "before.html").read_text().startswith("<!DOCTYPE html>")

    r = run("recalibrate", "--model-name", name, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["promoted"] and res["passed"] and res["version"] != res["from_version"]
    old, new = res["holdout_old"]["outcome"]["plan"], res["holdout_new"]["outcome"]["plan"]
    assert new["ece"] < old["ece"] - 0.03 and new["log_loss"] < old["log_loss"]
    assert abs(new["auc"] - old["auc"]) < 0.01  # the boosters did not change
    # only labels after the model's training data, closed before the end of the data
    assert pd.Timestamp(res["window"]["start"]) >= pd.Timestamp(until)

    after = tmp_path / "after.json"
    r = run("monitor", "--data", str(data), "--since", res["window"]["holdout_start"][:10],
            "--out", str(tmp_path / "after.html"), "--json", str(after), "--model", f"models:/{name}@champion")
    assert r.exit_code == 0, r.output
    assert json.loads(after.read_text())["verdict"] == "keep"


def test_recalibrate_without_new_closed_labels_is_one_clear_line(tmp_path):
    data = tmp_path / "leads"
    write_dataset(leads(n=3000, shift=0.0), data)
    name = "leads-nothing-new"
    assert run("train", "--data", str(data), "--model-name", name).exit_code == 0
    r = run("recalibrate", "--model-name", name, "--model", f"models:/{name}/1")
    assert r.exit_code == 1
    assert "recalibrate: only 0 activities with a closed outcome label fall after the model's training data" in r.output
    assert "Traceback" not in r.output


def test_monitor_refuses_a_bad_out_name(tmp_path):
    r = run("monitor", "--data", str(tmp_path), "--since", "2026-01-01", "--out", str(tmp_path / "x.txt"))
    assert r.exit_code == 1 and "must end in .html" in r.output
