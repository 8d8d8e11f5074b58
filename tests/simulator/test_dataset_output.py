"""The simulated dataset is a valid dataset of the contract, typed, consistent and labelled right."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import contract as c
from features.dataset import load_dataset
from simulator import generate


def test_all_eight_tables_load_with_contract_dtypes(sim_dir):
    ds = load_dataset(sim_dir)
    assert set(ds.tables) == set(c.TABLES)
    for name, frame in ds.tables.items():
        spec = c.TABLES[name]
        assert len(frame) > 0, name
        for col in spec.columns:
            if col.name in frame.columns:
                assert str(frame[col.name].dtype) == str(pd.Series([], dtype=c.PANDAS_DTYPES[col.kind]).dtype), \
                    (name, col.name, frame[col.name].dtype)
        assert set(spec.required_columns) <= set(frame.columns)
    assert ds.custom_fields[c.ACTIVITIES] == [generate.TEMPLATE_ID]
    assert ds.custom_fields[c.ACCOUNTS] == [generate.TIER]
    assert ds.custom_fields[c.DEALS] == [generate.LEAD_SOURCE]
    assert ds.custom_fields[c.CONTACTS] == [generate.TENURE_MONTHS]
    assert str(ds[c.ACTIVITIES][generate.TEMPLATE_ID].dtype) == "string"
    assert str(ds[c.CONTACTS][generate.TENURE_MONTHS].dtype) == "float64"
    assert ds.execution_time_fields == set()  # duration_s is the contract's own execution-time column


def test_the_frames_in_memory_equal_the_files(sim, sim_dir):
    ds = load_dataset(sim_dir)
    for name, frame in sim.tables.items():
        pd.testing.assert_frame_equal(ds[name], frame, check_dtype=True)


def test_keys_are_unique_and_references_resolve(sim):
    t = sim.tables
    for name, spec in c.TABLES.items():
        if spec.key:
            assert t[name][spec.key].is_unique, name
        for col, ref in spec.references.items():
            values = t[name][col].dropna()
            assert values.isin(t[ref][c.TABLES[ref].key]).all(), (name, col)
    acts = t[c.ACTIVITIES]
    contacts = t[c.CONTACTS].set_index(c.CONTACT_ID)
    deals = t[c.DEALS].set_index(c.DEAL_ID)
    # an activity's contact works at the deal's account, and the rep owns the deal
    assert (contacts.loc[acts[c.CONTACT_ID], c.ACCOUNT_ID].to_numpy() == acts[c.ACCOUNT_ID].to_numpy()).all()
    assert (deals.loc[acts[c.DEAL_ID], c.ACCOUNT_ID].to_numpy() == acts[c.ACCOUNT_ID].to_numpy()).all()
    assert (deals.loc[acts[c.DEAL_ID], c.OWNER_REP_ID].to_numpy() == acts[c.REP_ID].to_numpy()).all()
    assert set(sim.ground_truth[c.ACTIVITY_ID]) == set(acts[c.ACTIVITY_ID])


def test_activity_columns_look_like_a_crm(sim):
    acts = sim.tables[c.ACTIVITIES]
    assert set(acts[c.TYPE]) == set(c.ACTIVITY_TYPES)
    share = acts[c.TYPE].value_counts(normalize=True)
    assert 0.01 < share["none"] < 0.08
    assert acts[c.OCCURRED_AT].is_monotonic_increasing
    start = pd.Timestamp(sim.meta["start"], tz="UTC")
    end = pd.Timestamp(sim.meta["end"], tz="UTC")
    assert acts[c.OCCURRED_AT].min() >= start and acts[c.OCCURRED_AT].max() < end
    lag = (acts[c.LOGGED_AT] - acts[c.OCCURRED_AT]).dt.total_seconds()
    assert (lag >= 0).all() and (acts[c.LOGGED_AT] < end).all()
    assert (lag < 3 * 3600).mean() > 0.9  # mostly minutes after
    assert 0.01 < (lag > 86_400).mean() < 0.06  # a small share days later
    auto = acts[c.IS_AUTOMATED].to_numpy(dtype=bool)
    assert acts[c.SEQUENCE_STEP][auto].between(1, 5).all() and acts[c.SEQUENCE_STEP][~auto].isna().all()
    assert acts[c.PERSONALIZATION][auto].mean() < 0.15 < acts[c.PERSONALIZATION][~auto].mean()
    none = (acts[c.TYPE] == "none").to_numpy()
    assert acts[c.PERSONALIZATION][none].isna().all() and acts[c.DIRECTION][none].isna().all()
    assert set(acts[c.DIRECTION].dropna()) == {"inbound", "outbound"}
    live = acts[c.TYPE].isin(["call", "meeting", "demo", "workshop"]).to_numpy()
    assert acts[c.DURATION_S][live].notna().all() and acts[c.DURATION_S][~live].isna().all()
    assert acts[generate.TEMPLATE_ID][auto & (acts[c.TYPE] == "email").to_numpy()].notna().all()


def test_responses_follow_their_activity_within_the_output_horizon(sim):
    t = sim.tables
    resp = t[c.RESPONSES].merge(t[c.ACTIVITIES][[c.ACTIVITY_ID, c.OCCURRED_AT]], on=c.ACTIVITY_ID,
                                suffixes=("", "_act"))
    delay = (resp[c.OCCURRED_AT] - resp[f"{c.OCCURRED_AT}_act"]).dt.total_seconds()
    assert (delay > 0).all() and (delay < c.OUTPUT_HORIZON_DAYS * 86_400).all()
    assert set(resp[c.RESPONSE]) <= c.KNOWN_RESPONSES
    assert {"opened", "clicked", "replied", "positive_reply", "connected", "meeting_booked", "negative_reply",
            "unsubscribed", "bounced"} <= set(resp[c.RESPONSE])
    # at most one meaningful and one negative response per activity, never both
    kinds = resp.assign(m=resp[c.RESPONSE].isin(c.MEANINGFUL_RESPONSES),
                        n=resp[c.RESPONSE].isin(c.NEGATIVE_RESPONSES)).groupby(c.ACTIVITY_ID)[["m", "n"]].sum()
    assert kinds["m"].max() == 1 and kinds["n"].max() == 1 and not ((kinds["m"] > 0) & (kinds["n"] > 0)).any()


def test_stage_history_and_outcomes(sim):
    t = sim.tables
    stages, outcomes, deals = t[c.DEAL_STAGES], t[c.OUTCOMES], t[c.DEALS].set_index(c.DEAL_ID)
    first = stages.sort_values(c.ENTERED_AT, kind="stable").groupby(c.DEAL_ID).first()
    assert (first[c.STAGE_ORDER] == 1).all() and (first[c.STAGE] == "discovery").all()
    assert (first[c.ENTERED_AT] == deals.loc[first.index, c.CREATED_AT]).all()
    assert set(stages.loc[stages[c.STAGE_ORDER] == 0, c.STAGE]) == {"closed_lost"}
    assert set(stages.loc[stages[c.STAGE_ORDER] == 6, c.STAGE]) == {"closed_won"}
    assert stages[c.STAGE_ORDER].max() == 6
    won = set(stages.loc[stages[c.STAGE] == "closed_won", c.DEAL_ID])
    assert won == set(outcomes.loc[outcomes[c.OUTCOME] == "closed_won", c.DEAL_ID])
    assert won == set(deals.index[deals[c.WON].fillna(False).to_numpy(dtype=bool)])
    lost = set(stages.loc[stages[c.STAGE] == "closed_lost", c.DEAL_ID])
    assert lost == set(deals.index[(~deals[c.WON].fillna(True)).to_numpy(dtype=bool)])
    assert deals[c.CLOSED_AT].notna().sum() == len(won) + len(lost)
    # open stages only move up; nothing happens after closing
    open_rows = stages[stages[c.STAGE_ORDER] > 0].sort_values([c.DEAL_ID, c.ENTERED_AT], kind="stable")
    assert (open_rows.groupby(c.DEAL_ID)[c.STAGE_ORDER].diff().dropna() > 0).all()
    closed = deals[c.CLOSED_AT].dropna()
    last_stage = stages.groupby(c.DEAL_ID)[c.ENTERED_AT].max()
    assert (last_stage.loc[closed.index] == closed).all()
    last_act = t[c.ACTIVITIES].groupby(c.DEAL_ID)[c.OCCURRED_AT].max()
    both = closed.index.intersection(last_act.index)
    assert (last_act.loc[both] < closed.loc[both]).all()
    assert {"goals_agreed", "champion_confirmed", "workshop_sponsored", "decision_plan_agreed",
            "proposal_accepted", "closed_won"} == set(outcomes[c.OUTCOME])
    assert outcomes[c.CONTACT_ID].notna().all()


def contract_outcome_labels(tables: dict, end: pd.Timestamp, horizon_days: int = c.OUTCOME_HORIZON_DAYS) -> pd.Series:
    """The outcome label of the data contract, computed from the tables alone (NaN: censored)."""
    stages = tables[c.DEAL_STAGES].sort_values([c.DEAL_ID, c.ENTERED_AT], kind="stable")
    best_before = stages.groupby(c.DEAL_ID)[c.STAGE_ORDER].cummax().groupby(stages[c.DEAL_ID]).shift(1)
    advance = stages[(stages[c.STAGE_ORDER] != c.CLOSED_LOST_ORDER) & (stages[c.STAGE_ORDER] > best_before)]
    events = pd.concat([
        advance[[c.DEAL_ID, c.ENTERED_AT]].set_axis([c.DEAL_ID, "at"], axis=1),
        tables[c.OUTCOMES][[c.DEAL_ID, c.OCCURRED_AT]].set_axis([c.DEAL_ID, "at"], axis=1),
    ])
    acts = tables[c.ACTIVITIES]
    codes = pd.Index(tables[c.DEALS][c.DEAL_ID])
    span = np.int64(10**15)  # microseconds: far more than the data spans

    def key(deal, at):  # (deal, time) as one sortable integer
        micros = (at - pd.Timestamp("2000-01-01", tz="UTC")).dt.total_seconds().mul(10**6).round().astype("int64")
        return pd.Categorical(deal, categories=codes).codes.astype(np.int64) * span + micros

    ev = np.sort(key(events[c.DEAL_ID], events["at"]).to_numpy())
    a = key(acts[c.DEAL_ID], acts[c.OCCURRED_AT]).to_numpy()
    h = np.int64(horizon_days) * 86_400 * 10**6
    hits = np.searchsorted(ev, a + h, side="right") - np.searchsorted(ev, a, side="right")
    censored = (acts[c.OCCURRED_AT] + pd.Timedelta(days=horizon_days) > end).to_numpy()
    return pd.Series(np.where(censored, np.nan, (hits > 0).astype(float)), index=acts.index)


def test_ground_truth_labels_are_the_contract_labels(sim):
    end = pd.Timestamp(sim.meta["end"], tz="UTC")
    labels = contract_outcome_labels(sim.tables, end)
    gt = sim.ground_truth.set_index(c.ACTIVITY_ID).loc[sim.tables[c.ACTIVITIES][c.ACTIVITY_ID]]
    np.testing.assert_array_equal(labels.to_numpy(), gt["label_outcome"].to_numpy())
    # outputs: a meaningful response row exists exactly when the truth drew one (uncensored)
    resp = sim.tables[c.RESPONSES]
    got = sim.tables[c.ACTIVITIES][c.ACTIVITY_ID].isin(
        resp.loc[resp[c.RESPONSE].isin(c.MEANINGFUL_RESPONSES), c.ACTIVITY_ID]).to_numpy()
    known = gt["label_output"].notna().to_numpy()
    np.testing.assert_array_equal(got[known], gt["label_output"].to_numpy()[known] == 1)


def test_label_rates_are_in_the_designed_ranges(sim):
    gt = sim.ground_truth
    assert 0.05 <= gt["label_outcome"].mean() <= 0.15
    assert 0.08 <= gt["label_output"].mean() <= 0.20
    assert 0.01 <= gt["label_negative"].mean() <= 0.04
