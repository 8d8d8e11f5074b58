"""Labels the data has, the purge of short campaigns and the leakage warnings (issue 15)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.dataset import write_dataset
from features.schema import LABELS, NUMERIC, PLAN, Feature
from training.cli import app
from training.config import load_config
from training.data import LoadedData
from training.synthetic import make_training_table
from training.train import run_training

T0 = pd.Timestamp("2026-03-02T09:00:00Z")


def flat_campaign(n: int = 4000, days: int = 14, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A randomized two-week e-mail campaign as import-flat writes it: one row per customer, each its own deal,
    a conversion written one second after the e-mail, no responses."""
    rng = np.random.default_rng(seed)
    occurred = T0 + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n)), unit="s")
    spend = rng.gamma(2.0, 100.0, n)
    treated = rng.random(n) < 0.5
    p = 1 / (1 + np.exp(-(-2.6 + 0.004 * (spend - 200) + 0.8 * treated)))
    y = rng.random(n) < p
    ids = [f"row-{i}" for i in range(n)]
    acts = pd.DataFrame({c.ACTIVITY_ID: ids, c.OCCURRED_AT: occurred, c.TYPE: "email",
                         c.DEAL_ID: [f"deal-{i}" for i in ids],
                         "history_spend": spend, "segment": np.where(treated, "mailed", "control")})
    deals = pd.DataFrame({c.DEAL_ID: acts[c.DEAL_ID], c.CREATED_AT: occurred})
    outcomes = pd.DataFrame({c.DEAL_ID: acts.loc[y, c.DEAL_ID].to_numpy(), c.OUTCOME: "conversion",
                             c.OCCURRED_AT: occurred[y] + pd.Timedelta(seconds=1)})
    return {c.ACTIVITIES: acts, c.DEALS: deals, c.OUTCOMES: outcomes}


@pytest.mark.slow
def test_outcome_only_short_campaign_trains_without_a_config(tmp_path):
    data = tmp_path / "campaign"
    write_dataset(flat_campaign(), data)
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--json", "--model-name", "campaign"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # outputs and negatives have no data: skipped with the reason, the model is registered
    assert set(doc["skipped_labels"]) == {"output", "negative"}
    assert all("too little data" in why for why in doc["skipped_labels"].values())
    assert doc["version"] is not None
    assert {m["label"] for m in doc["metrics"]} == {"outcome"}
    # the purge leaves in what cannot leak: every deal has one activity, conversions 1 s after it
    notes = "\n".join(doc["notes"])
    assert "every deal has one activity" in notes and "settled 1 s after its activity" in notes
    assert doc["counts"]["outcome"]["train"]["positives"] >= 50


def test_the_purge_keeps_the_whole_horizon_for_multi_activity_deals(tmp_path):
    from features.dataset import Dataset, coerce_table
    from training.purge import settle_days

    tables = flat_campaign(n=400)
    acts = tables[c.ACTIVITIES]
    single = Dataset({k: coerce_table(k, v.drop(columns=["history_spend", "segment"], errors="ignore"))
                      for k, v in tables.items()})
    s = settle_days(single, {"outcome_days": 14, "output_days": 7}, ["outcome", "output"])
    assert s["outcome"].settle_days == pytest.approx(1 / 86400)
    assert s["output"].settle_days == 7 and "no responses" in s["output"].reason
    shared = dict(single.tables)
    shared[c.ACTIVITIES] = single[c.ACTIVITIES].assign(**{c.DEAL_ID: acts[c.DEAL_ID].str.slice(0, 8)})
    s = settle_days(Dataset(shared), {"outcome_days": 14, "output_days": 7}, ["outcome"])
    assert s["outcome"].settle_days == 14 and "several activities" in s["outcome"].reason
    off = settle_days(single, {"outcome_days": 14, "output_days": 7}, ["outcome"], enabled=False)
    assert off["outcome"].settle_days == 14


def test_the_gate_still_refuses_an_outcome_label_that_is_too_small(tmp_path):
    tables = flat_campaign(n=300)
    data = tmp_path / "tiny"
    write_dataset(tables, data)
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--model-name", "tiny"])
    assert result.exit_code == 1
    assert "label outcome: too little data" in result.output and "Traceback" not in result.output


def _with_after_the_fact_fields(seed: int = 2, noise: float = 0.1):
    """Two fields written after the outcome, each right 90% of the time: alone ~0.9 AUC, together ~0.98."""
    t = make_training_table(6000, seed=seed)
    rng = np.random.default_rng(seed)
    y = np.nan_to_num(t.frame[LABELS["outcome"]].to_numpy(dtype=np.float64), nan=0.0)
    extra = {}
    for name in ("cf_activities_call_result", "cf_activities_followup_status"):
        flip = rng.random(len(y)) < noise
        extra[name] = np.where(flip, 1 - y, y) + rng.normal(0, 0.05, len(y))
    frame = t.frame.assign(**extra)
    feats = list(t.features) + [Feature(n, "custom", NUMERIC, PLAN, f"{n} {{v}}") for n in extra]
    return dataclasses.replace(t, frame=frame, features=feats)


def test_leak_warnings_name_strong_fields_and_an_implausible_model():
    t = _with_after_the_fact_fields()
    result = run_training(LoadedData(t), load_config(**{"labels": ["outcome"], "refit.enabled": False}))
    warned = {w.feature for w in result.leakage.warnings if w.reason == "strong_single_feature"}
    assert warned == {"cf_activities_call_result", "cf_activities_followup_status"}
    assert result.leakage.dropped == []  # below the drop threshold: kept, but named
    top = result.leakage.strongest("outcome", 2)
    assert {f for f, _ in top} == warned and all(0.85 <= a < 0.95 for _, a in top)
    implausible = [w for w in result.leakage.warnings if w.reason == "implausible_test_auc"]
    assert implausible and implausible[0].value > 0.95
    assert "cf_activities_" in implausible[0].detail and "execution-time" in implausible[0].detail
    assert any(n.startswith("leakage warning: outcome/") for n in result.notes)
    doc = result.leakage.to_dict()
    assert doc["strongest"]["outcome"][0]["feature"] in warned


def test_honest_data_gets_no_leak_warning():
    t = make_training_table(6000, seed=2)
    result = run_training(LoadedData(t), load_config(**{"labels": ["outcome"], "refit.enabled": False}))
    assert result.leakage.warnings == []
    assert len(result.leakage.strongest("outcome")) == 5
