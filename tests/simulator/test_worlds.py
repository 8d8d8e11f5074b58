"""Worlds: world files load, simulate, keep their truth, show their mechanism, and fail clearly."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from simulator import engine as en
from simulator import truth as tr
from simulator.generate import simulate, write_simulation
from simulator.ground_truth import GroundTruth
from simulator.params import BehaviourParams, SimulationConfig
from simulator.truth import TruthParams
from simulator.worlds import (
    WorldError,
    load_world,
    parse_world,
    simulate_world,
    tiny_effect_table,
    tiny_world,
    world_names,
)
from training.cli import app

runner = CliRunner()


def _kinds(sim) -> pd.DataFrame:
    acts = sim.tables[c.ACTIVITIES][[c.ACTIVITY_ID, c.TYPE, c.IS_AUTOMATED]]
    m = acts.merge(sim.ground_truth, on=c.ACTIVITY_ID)
    m["kind"] = m[c.TYPE].astype(str) + np.where(m[c.IS_AUTOMATED].fillna(False).to_numpy(bool), "/auto", "")
    return m


# --- the shipped worlds -------------------------------------------------------------------------


def test_at_least_six_named_worlds_besides_the_default_two_of_them_adversarial():
    names = world_names()
    assert names[0] == "default"
    assert len(names) >= 7
    assert sum(n.startswith("adversarial") for n in names) >= 2
    assert "unseen" in names
    for n in names:
        w = load_world(n)
        assert w.name == n and w.description and w.source == f"builtin:{n}"


@pytest.mark.parametrize("name", world_names())
def test_each_world_simulates_a_small_history(name):
    sim = simulate_world(load_world(name), 3000, seed=4)
    gt = sim.ground_truth
    assert 2400 <= len(gt) <= 3000  # whole accounts are kept: short by less than one account
    assert gt["p_outcome"].between(0, 1).all() and gt["label_outcome"].notna().any()
    assert sim.meta["world"]["name"] == name
    assert TruthParams.from_dict(sim.meta["truth_params"]) == load_world(name).truth


def test_the_default_world_is_todays_simulation():
    w = load_world("default")
    assert w.behaviour == BehaviourParams() and w.truth == TruthParams()
    a = simulate_world(w, 3000, seed=9)
    b = simulate(SimulationConfig(n_activities=3000, seed=9), oracle=None)
    for name in c.TABLES:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    pd.testing.assert_frame_equal(a.ground_truth, b.ground_truth)


def test_the_worlds_differ_in_mechanism():
    w = {n: load_world(n) for n in world_names()}
    pmfs = {n: x.behaviour.delay_pmf() for n, x in w.items()}
    assert pmfs["same_day"][0] >= 0.5  # mostly recorded the same evening
    assert len(pmfs["slow_records"]) >= 15  # up to two weeks
    assert w["busy_automators"].behaviour.automation_volume_elasticity > 1
    assert w["harmful_automation"].truth.outcome_automated < -2.5
    assert w["adversarial_types"].behaviour.manual_type_quality
    assert w["adversarial_automation"].behaviour.automated_quality > 0
    assert w["stage_shift"].truth.outcome_type_stage != TruthParams().outcome_type_stage
    assert w["stage_shift"].truth.outcome_seniority_stage != TruthParams().outcome_seniority_stage
    assert w["slow_records"].behaviour.quality_intensity > 0.6 and w["slow_records"].truth.outcome_quality > 0.5


# --- the truth of a world ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unseen", "same_day", "adversarial_types"])
def test_the_truth_replays_every_activity_of_a_non_default_world(name, tmp_path):
    sim = simulate_world(load_world(name), 4000, seed=3)
    write_simulation(sim, tmp_path / "data")
    gt = GroundTruth.load(tmp_path / "data")
    assert gt.world == name and gt.params == load_world(name).truth
    acts = gt.dataset[c.ACTIVITIES]
    # from 30 days in, every window the truth reads lies inside the written history
    inside = np.flatnonzero((acts[c.OCCURRED_AT] >= pd.Timestamp(gt.meta["start"], tz="UTC")
                             + pd.Timedelta(days=30)).to_numpy())
    assert len(inside) > 3000
    for i in inside:
        act = acts.iloc[i]
        state = gt.state(act[c.DEAL_ID], act[c.OCCURRED_AT])
        assert state.stage_order == gt.activities.iloc[i][c.STAGE_ORDER], act[c.ACTIVITY_ID]
        p = tr.true_outcome_probability(state, gt.candidate_for(act[c.ACTIVITY_ID]), gt.params)
        assert p == pytest.approx(gt.activities.iloc[i]["p_outcome"], rel=1e-12), act[c.ACTIVITY_ID]


def test_true_effects_are_against_waiting(tmp_path):
    sim = simulate_world(load_world("harmful_automation"), 3000, seed=2)
    write_simulation(sim, tmp_path / "data")
    gt = GroundTruth.load(tmp_path / "data")
    act = gt.dataset[c.ACTIVITIES].iloc[-200]
    who = act[c.CONTACT_ID]
    cands = [gt.candidate("email", who, personalization=0.9), gt.candidate("email", who, personalization=0.1,
                                                                         is_automated=True),
             gt.candidate("none")]
    eff = gt.outcome_effects(act[c.DEAL_ID], act[c.OCCURRED_AT], cands)
    assert eff[2] == 0.0
    assert eff[0] > eff[1] and eff[1] < 0  # harmful: an automated email is worse than waiting


# --- mechanisms visible in the data ----------------------------------------------------------------


def test_the_delay_distribution_shows_in_the_data():
    pmf = (0.5, 0.0, 0.3, 0.0, 0.2)
    base = tiny_world()
    world = replace(base, behaviour=replace(base.behaviour, advance_delay_pmf=pmf))
    sim = simulate_world(world, 16_000, seed=5)
    gt = sim.ground_truth
    acts = sim.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    trig = gt[gt["triggered_advance"].to_numpy(bool)]
    at = acts.loc[trig[c.ACTIVITY_ID], c.OCCURRED_AT].to_numpy()
    lands = pd.DatetimeIndex(trig["advance_lands_at"])
    lag_days = (lands.normalize() - pd.DatetimeIndex(at).normalize()).days.to_numpy()
    assert len(lag_days) > 700
    shares = np.bincount(lag_days, minlength=len(pmf))[: len(pmf)] / len(lag_days)
    np.testing.assert_allclose(shares, pmf, atol=0.05)
    assert lag_days.max() <= len(pmf) - 1
    # a same-day advance is recorded later that day, after the activity, as a stage or outcome row
    same = lag_days == 0
    assert (lands[same] > pd.DatetimeIndex(at[same])).all()
    recorded = set(pd.DatetimeIndex(sim.tables[c.OUTCOMES][c.OCCURRED_AT]).asi8) | set(
        pd.DatetimeIndex(sim.tables[c.DEAL_STAGES][c.ENTERED_AT]).asi8)
    hit = np.array([t in recorded for t in lands[same].asi8])
    assert hit.mean() > 0.8  # the rest fell on deals already closed or advanced that evening


def test_busier_reps_automate_a_larger_share_in_the_rep_style_world():
    def corr(beh):
        reps = en.make_reps(np.random.default_rng(0), 300, beh)
        share = reps.automation / (reps.automation + reps.volume)
        return pd.Series(reps.volume).corr(pd.Series(share), method="spearman")

    assert corr(load_world("busy_automators").behaviour) > 0.5
    assert corr(BehaviourParams()) < 0.2


def test_adversarial_worlds_turn_the_naive_association_around():
    types = _kinds(simulate_world(load_world("adversarial_types"), 15_000, seed=2))
    rate = types.groupby("kind")["label_outcome"].mean()
    coef = load_world("adversarial_types").truth.outcome_type_stage
    assert all(m > s for m, s in zip(coef["meeting"], coef["social"], strict=True))  # meeting is better everywhere
    assert rate["social"] > rate["meeting"]  # yet social deals advance more often
    auto = _kinds(simulate_world(load_world("adversarial_automation"), 15_000, seed=2))
    rate = auto.groupby("kind")["label_outcome"].mean()
    assert load_world("adversarial_automation").truth.outcome_automated < 0
    for t in ("email", "inmail", "social"):
        assert rate[f"{t}/auto"] > rate[t], t
    assert rate["email/auto"] > rate["call"]


# --- the tiny closed-form world --------------------------------------------------------------------


def test_the_tiny_world_truth_is_its_closed_form():
    table = tiny_effect_table()
    assert len(table) == 5 * (8 * 2 + 1)
    best = table[table["rank"] == 1].set_index("stage_order")["type"].to_dict()
    assert best == {1: "call", 2: "meeting", 3: "demo", 4: "proposal", 5: "workshop"}
    assert (table.loc[table["type"] == "none", "effect"] == 0).all()
    sim = simulate_world(tiny_world(), 5000, seed=1)
    m = _kinds(sim)
    closed = table.assign(kind=table["type"] + np.where(table["is_automated"], "/auto", ""))
    closed = closed.set_index(["stage_order", "kind"])["p_outcome"]
    expected = closed.loc[list(zip(m[c.STAGE_ORDER], m["kind"], strict=True))].to_numpy()
    np.testing.assert_allclose(m["p_outcome"].to_numpy(), expected, rtol=1e-12)


# --- world files that cannot be used ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "needle"), [
    ("colour: blue\n", "unknown key 'colour'"),
    ("behaviour:\n  qualty_intensity: 1\n", "behaviour.qualty_intensity: unknown behaviour parameter"),
    ("truth:\n  outcome_automatd: -1\n", "truth.outcome_automatd: unknown truth parameter"),
    ("behaviour:\n  quality_intensity: high\n", "behaviour.quality_intensity: expected a finite number"),
    ("behaviour:\n  advance_delay_pmf: [0.5, -0.1]\n", "behaviour.advance_delay_pmf: expected non-negative"),
    ("behaviour:\n  advance_delay_pmf: [1.0]\n  advance_delay_probs: [1.0]\n", "both advance_delay_pmf"),
    ("behaviour:\n  days: 30\n", "behaviour.days: set by the run"),
    ("behaviour:\n  manual_type_quality: {meetings: 1}\n", "unknown activity type 'meetings'"),
    ("behaviour:\n  stage_intensity: [1, 2]\n", "behaviour.stage_intensity: expected 5 numbers"),
    ("truth:\n  outcome_type_stage:\n    demos: [1, 1, 1, 1, 1]\n", "truth.outcome_type_stage.demos: unknown name"),
    ("truth:\n  outcome_type_stage:\n    demo: [1, 1]\n", "truth.outcome_type_stage.demo: expected 5 numbers"),
    ("behaviour: [1, 2]\n", "'behaviour' must be a mapping"),
    ("behaviour:\n  same_day_window_hours: [20, 23]\n  advance_delay_pmf: [1]\n", "must start after working_hours"),
    ("truth: {outcome_quality: [1\n", "not valid YAML"),
])
def test_bad_world_files_fail_naming_the_file_and_key(tmp_path, text, needle):
    path = tmp_path / "my_world.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WorldError) as err:
        load_world(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_unknown_world_names_and_missing_files():
    with pytest.raises(WorldError, match="no world named 'atlantis'.*unseen"):
        load_world("atlantis")
    with pytest.raises(WorldError, match="nowhere.yaml: cannot read"):
        load_world("nowhere.yaml")


def test_a_partial_table_merges_over_the_default():
    w = parse_world("truth:\n  outcome_type_stage:\n    demo: [0, 0, 0, 0, 0]\n", "inline")
    assert w.truth.outcome_type_stage["demo"] == (0.0,) * 5
    assert w.truth.outcome_type_stage["call"] == TruthParams().outcome_type_stage["call"]


# --- the command line ------------------------------------------------------------------------------


def test_simulate_with_a_world(tmp_path):
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "--out", str(out), "--activities", "2000", "--world", "same_day",
                                 "--oracle-share", "0.2", "--oracle-rollouts", "2"])
    assert result.exit_code == 0, result.output
    assert "world 'same_day'" in result.output
    meta = json.loads((out / "ground_truth.json").read_text())
    assert meta["world"]["name"] == "same_day"
    assert meta["behaviour_params"]["advance_delay_pmf"] == [0.7, 0.2, 0.1]
    truth = pd.read_parquet(out / "ground_truth.parquet")
    assert truth["p_outcome_label_ex_ante"].between(0, 1).any()  # the oracle runs with same-day advances


def test_simulate_with_a_world_file_and_bad_ones(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\nbehaviour:\n  advance_delay_pmf: [0, 0, 1]\n", encoding="utf-8")
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "a"), "--activities", "1500",
                                 "--world", str(good), "--oracle-share", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "ground_truth.json").read_text())["world"]["source"] == str(good)
    bad = tmp_path / "bad.yaml"
    bad.write_text("truth:\n  outcome_automatd: -1\n", encoding="utf-8")
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "b"), "--world", str(bad)])
    assert result.exit_code == 2
    assert "bad.yaml: truth.outcome_automatd: unknown truth parameter" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "c"), "--world", "atlantis"])
    assert result.exit_code == 2 and "no world named 'atlantis'" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["same_day", "slow_records"])
def test_label_oracles_stay_calibrated_with_same_day_and_long_delays(name):
    from simulator.params import OracleSettings

    truth = simulate_world(load_world(name), 15_000, seed=6, oracle=OracleSettings(share=0.5, rollouts=4)).ground_truth
    labelled = truth["label_outcome"].notna().to_numpy()
    y = truth["label_outcome"].to_numpy()
    assert truth["p_outcome_label"][labelled].mean() == pytest.approx(y[labelled].mean(), rel=0.15)
    sampled = labelled & truth["p_outcome_label_ex_ante"].notna().to_numpy()
    assert sampled.sum() > 4000
    ex = truth["p_outcome_label_ex_ante"].to_numpy()[sampled]
    assert ex.mean() == pytest.approx(y[sampled].mean(), rel=0.1)
    # the activity's own chance is in it, unless the deal may be lost before a multi-day advance lands
    assert (ex >= truth["p_outcome"].to_numpy()[sampled] - 1e-9).mean() > 0.99
