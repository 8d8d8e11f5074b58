"""The phenomena the product exists for show in the generated data, not only in the truth function."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import contract as c


def _rank_corr(a, b) -> float:
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    ranks = pd.Series(score).rank().to_numpy()
    pos = y == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def test_automated_bulk_rarely_advances_and_draws_more_negatives(sim):
    auto = sim.tables[c.ACTIVITIES][c.IS_AUTOMATED].to_numpy(dtype=bool)
    gt = sim.ground_truth
    assert gt["label_negative"][auto].mean() > 3 * gt["label_negative"][~auto].mean()
    assert gt["label_outcome"][auto].mean() < 0.6 * gt["label_outcome"][~auto].mean()
    assert gt["p_outcome"][auto].mean() < 0.2 * gt["p_outcome"][~auto].mean()
    assert gt["label_negative"][auto].mean() > 0.05


def test_opens_are_nearly_meaningless_replies_are_not(sim):
    acts, resp, gt = sim.tables[c.ACTIVITIES], sim.tables[c.RESPONSES], sim.ground_truth
    email = acts[c.TYPE].isin(["email", "inmail"]).to_numpy()
    y = gt["label_outcome"].to_numpy()[email]
    ids = acts[c.ACTIVITY_ID][email]
    opened = ids.isin(resp.loc[resp[c.RESPONSE] == "opened", c.ACTIVITY_ID]).to_numpy()
    replied = ids.isin(resp.loc[resp[c.RESPONSE].isin(c.MEANINGFUL_RESPONSES), c.ACTIVITY_ID]).to_numpy()
    ok = ~np.isnan(y)
    y, opened, replied = y[ok], opened[ok], replied[ok]
    open_lift = y[opened].mean() / y[~opened].mean()
    reply_lift = y[replied].mean() / y[~replied].mean()
    assert 0.85 < open_lift < 1.15
    assert reply_lift > 1.8
    assert abs(_auc(y, opened.astype(float)) - 0.5) < 0.02


def test_outputs_correlate_with_advances_but_are_distinct_events(sim):
    gt = sim.ground_truth
    ok = gt["label_output"].notna() & gt["label_outcome"].notna()
    out, adv = gt["label_output"][ok].to_numpy(), gt["label_outcome"][ok].to_numpy()
    assert adv[out == 1].mean() > 1.8 * adv[out == 0].mean()
    assert adv[out == 1].mean() < 0.5  # most replies advance nothing
    assert out[adv == 1].mean() < 0.5  # and most advances follow no reply to that activity
    assert _rank_corr(gt["p_output"], gt["p_outcome"]) > 0.3


def test_reps_work_promising_deals_harder_so_raw_counts_flatter_activity(sim):
    deals = sim.deals_truth
    assert _rank_corr(deals["n_activities"], deals["quality"]) > 0.35
    closed = deals[deals["status"] != "open"]
    naive = np.polyfit(closed["n_activities"], closed["n_advances"], 1)[0]
    bins = pd.qcut(closed["quality"], 5, labels=False)
    within = np.mean([np.polyfit(g["n_activities"], g["n_advances"], 1)[0] for _, g in closed.groupby(bins)])
    assert naive > 2 * within  # most of the raw association is the latent quality


def test_weekends_are_quiet_and_worth_less(sim):
    acts, gt = sim.tables[c.ACTIVITIES], sim.ground_truth
    weekend = (acts[c.OCCURRED_AT].dt.day_of_week >= 5).to_numpy()
    manual = ~acts[c.IS_AUTOMATED].to_numpy(dtype=bool)
    assert 0.02 < weekend.mean() < 0.15
    assert weekend[~manual].mean() > 2 * weekend[manual].mean()  # sequences also send on weekends
    assert gt["p_outcome"][weekend & manual].mean() < 0.8 * gt["p_outcome"][~weekend & manual].mean()


def test_reps_differ_in_skill_and_it_shows_in_their_track_record(sim):
    frame = pd.DataFrame({"rep": sim.tables[c.ACTIVITIES][c.REP_ID].to_numpy(),
                          "advanced": sim.ground_truth["triggered_advance"].to_numpy(),
                          "skill": sim.ground_truth["rep_skill"].to_numpy()})
    reps = frame.groupby("rep").agg(rate=("advanced", "mean"), skill=("skill", "first"))
    assert reps["skill"].std() > 0.1
    assert reps["rate"].max() > 2 * reps["rate"].min()
    assert _rank_corr(reps["rate"], reps["skill"]) > 0.5


def test_deals_go_cold_and_are_lost(sim):
    stages, deals = sim.tables[c.DEAL_STAGES], sim.tables[c.DEALS].set_index(c.DEAL_ID)
    status = sim.deals_truth["status"].value_counts()
    assert status["lost"] > 2 * status["won"] > 0
    lost_at = stages[stages[c.STAGE] == "closed_lost"].set_index(c.DEAL_ID)[c.ENTERED_AT]
    moved = stages[stages[c.STAGE_ORDER].between(2, 5)].groupby(c.DEAL_ID)[c.ENTERED_AT].max()
    last_progress = pd.concat([deals.loc[lost_at.index, c.CREATED_AT], moved.reindex(lost_at.index)], axis=1).max(axis=1)
    assert (lost_at - last_progress).dt.days.median() > 45
    # effort fades before the loss (deals whose whole life is in the data, lost after 90 days)
    acts = sim.tables[c.ACTIVITIES].merge(lost_at.rename("lost_at"), left_on=c.DEAL_ID, right_index=True)
    age = (acts[c.OCCURRED_AT] - acts[c.DEAL_ID].map(deals[c.CREATED_AT])).dt.days
    to_loss = (acts["lost_at"] - acts[c.OCCURRED_AT]).dt.days
    created = deals.loc[lost_at.index, c.CREATED_AT]
    old = ((lost_at - created).dt.days > 90) & (created >= pd.Timestamp(sim.meta["start"], tz="UTC"))
    olds = acts[c.DEAL_ID].isin(old.index[old])
    assert (olds & (age < 30)).sum() > 1.5 * (olds & (to_loss < 30)).sum()


def test_who_is_reached_and_when_shows_in_the_generated_truth(sim):
    gt, acts = sim.ground_truth, sim.tables[c.ACTIVITIES]
    sen = acts[c.CONTACT_ID].map(sim.tables[c.CONTACTS].set_index(c.CONTACT_ID)[c.SENIORITY]).to_numpy()
    meet = (acts[c.TYPE] == "meeting").to_numpy() & (gt[c.STAGE_ORDER] >= 4).to_numpy()
    senior = np.isin(sen, ["vp", "c_level"])
    junior = sen == "individual_contributor"
    assert gt["p_outcome"][meet & senior].mean() > 1.5 * gt["p_outcome"][meet & junior].mean()
    tailored = (acts[c.PERSONALIZATION] > 0.7).to_numpy() & (acts[c.TYPE] == "email").to_numpy()
    mass = (acts[c.PERSONALIZATION] < 0.2).to_numpy() & (acts[c.TYPE] == "email").to_numpy() & \
        ~acts[c.IS_AUTOMATED].to_numpy(dtype=bool)
    assert gt["p_outcome"][tailored].mean() > 1.5 * gt["p_outcome"][mass].mean()
