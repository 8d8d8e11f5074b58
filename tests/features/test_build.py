"""Feature and label pipeline: reference values, point-in-time properties, labels, parity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import contract as c
from features import schema as s
from features.build import (
    Horizons,
    build_serving_frame,
    build_training_frame,
    rep_context,
    request_items,
)
from features.dataset import Dataset, coerce_table
from tests.features.factory import T0, make_history

DAY = pd.Timedelta(days=1)


def _features(table) -> list[str]:
    return [f.name for f in table.features]


def _naive_touches(ds: Dataset, who: str, window_days: int | None) -> pd.Series:
    """Reference: touches known before t (logged before t) that happened in [t - w, t)."""
    a = ds[c.ACTIVITIES]
    key = c.CONTACT_ID if who == "contact" else c.DEAL_ID
    avail = a[[c.OCCURRED_AT, c.LOGGED_AT]].max(axis=1)
    out = {}
    for _, row in a.iterrows():
        t = row[c.OCCURRED_AT]
        if pd.isna(row[key]):
            out[row[c.ACTIVITY_ID]] = 0.0
            continue
        m = (a[key] == row[key]).fillna(False) & (a[c.TYPE] != "none") & (avail < t)
        if window_days is not None:
            m &= a[c.OCCURRED_AT] >= t - pd.Timedelta(days=window_days)
        out[row[c.ACTIVITY_ID]] = float(m.sum())
    return pd.Series(out)


@pytest.mark.parametrize("who", ["contact", "deal"])
@pytest.mark.parametrize("window", [1, 7, 30])
def test_touch_counts_match_a_naive_reference(who, window):
    ds = make_history(n_activities=250, seed=3, late_share=0.25)
    frame = build_training_frame(ds).frame.set_index(c.ACTIVITY_ID)
    expected = _naive_touches(ds, who, window)
    got = frame[f"touches_{who}_{window}d"].reindex(expected.index)
    pd.testing.assert_series_equal(got.astype(float), expected, check_names=False)


def test_days_since_touch_and_outputs_match_a_naive_reference():
    ds = make_history(n_activities=200, seed=4, late_share=0.3)
    frame = build_training_frame(ds).frame.set_index(c.ACTIVITY_ID)
    a = ds[c.ACTIVITIES].set_index(c.ACTIVITY_ID, drop=False)
    avail = a[[c.OCCURRED_AT, c.LOGGED_AT]].max(axis=1)
    r = ds[c.RESPONSES]
    r = r[r[c.RESPONSE].isin(list(c.MEANINGFUL_RESPONSES))]
    r_contact = a.loc[r[c.ACTIVITY_ID], c.CONTACT_ID].to_numpy()
    r_known = np.maximum(r[c.OCCURRED_AT].to_numpy(), avail.loc[r[c.ACTIVITY_ID]].to_numpy())
    for aid, row in a.iterrows():
        t = row[c.OCCURRED_AT]
        prior = a[(a[c.CONTACT_ID] == row[c.CONTACT_ID]) & (a[c.TYPE] != "none") & (avail < t)]
        want = (t - prior[c.OCCURRED_AT].max()) / DAY if len(prior) else np.nan
        got = frame.loc[aid, "days_since_touch_contact"]
        assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-6), aid
        m = (r_contact == row[c.CONTACT_ID]) & (r_known < t) & (r[c.OCCURRED_AT].to_numpy() >= t - 30 * DAY)
        assert frame.loc[aid, "outputs_contact_30d"] == m.sum(), aid


def _naive_hand_per_day(a: pd.DataFrame, deals: pd.DataFrame, avail: pd.Series, row) -> float:
    """Reference: hand-made touches to the deal known before t, per day of the deal's age."""
    t = row[c.OCCURRED_AT]
    if pd.isna(row[c.DEAL_ID]):
        return np.nan
    created = deals.loc[row[c.DEAL_ID], c.CREATED_AT]
    hand = (a[c.DEAL_ID] == row[c.DEAL_ID]).fillna(False) & (a[c.TYPE] != "none") & (avail < t)
    hand &= ~a[c.IS_AUTOMATED].fillna(False).astype(bool)
    return float(hand.sum()) / max((t - created) / DAY, 1.0)


def test_deal_attention_and_amount_baselines_match_a_naive_reference():
    ds = make_history(n_activities=260, n_deals=40, seed=5, late_share=0.2)
    frame = build_training_frame(ds).frame.set_index(c.ACTIVITY_ID)
    a = ds[c.ACTIVITIES].set_index(c.ACTIVITY_ID, drop=False)
    avail = a[[c.OCCURRED_AT, c.LOGGED_AT]].max(axis=1)
    deals = ds[c.DEALS].set_index(c.DEAL_ID, drop=False)
    team = ds[c.REPS].set_index(c.REP_ID)[c.TEAM]
    rate = {aid: _naive_hand_per_day(a, deals, avail, row) for aid, row in a.iterrows()}
    checked = {"ratio": 0, "amount": 0}
    for aid, row in a.iterrows():
        t = row[c.OCCURRED_AT]
        assert frame.loc[aid, "hand_touches_deal_per_day"] == pytest.approx(rate[aid], nan_ok=True), aid
        # the rep's usual: their activities of the last 90 days known before t, with a rate
        mine = a[(a[c.REP_ID] == row[c.REP_ID]) & (avail < t) & (a[c.OCCURRED_AT] >= t - 90 * DAY)]
        usual = [rate[i] for i in mine.index if not np.isnan(rate[i])]
        want = rate[aid] / np.mean(usual) if len(usual) >= 10 and np.mean(usual) > 0 else np.nan
        assert frame.loc[aid, "deal_attention_vs_rep"] == pytest.approx(want, nan_ok=True), aid
        checked["ratio"] += not np.isnan(want)
        # typical amount: deals of the same product owned by the rep's team, created before t
        if pd.isna(row[c.DEAL_ID]):
            assert np.isnan(frame.loc[aid, "amount_vs_typical"]), aid
            continue
        deal = deals.loc[row[c.DEAL_ID]]
        same = deals[(deals[c.PRODUCT] == deal[c.PRODUCT]) & (deals[c.CREATED_AT] < t)
                     & (deals[c.OWNER_REP_ID].map(team) == team[row[c.REP_ID]])]
        want = deal[c.AMOUNT] / np.exp(np.log(same[c.AMOUNT]).mean()) if len(same) >= 5 else np.nan
        assert frame.loc[aid, "amount_vs_typical"] == pytest.approx(want, nan_ok=True), aid
        checked["amount"] += not np.isnan(want)
    assert checked["ratio"] > 50 and checked["amount"] > 20, checked  # the data exercises both


def test_harder_worked_deal_scores_above_the_reps_usual_and_automation_does_not_count():
    ds = make_history(n_activities=200, seed=6)
    acts = ds[c.ACTIVITIES]
    last = acts[c.OCCURRED_AT].max()
    rep, deal = "r0", ds[c.DEALS].loc[ds[c.DEALS][c.OWNER_REP_ID] == "r0", c.DEAL_ID].iloc[0]
    burst = pd.DataFrame({
        c.ACTIVITY_ID: [f"x{i}" for i in range(31)],
        c.OCCURRED_AT: [last + pd.Timedelta(hours=i + 1) for i in range(31)],
        c.TYPE: ["call"] * 31, c.REP_ID: [rep] * 31, c.DEAL_ID: [deal] * 31,
        c.IS_AUTOMATED: [False] * 30 + [False],
    })
    robots = burst.assign(**{c.ACTIVITY_ID: [f"y{i}" for i in range(31)], c.IS_AUTOMATED: [True] * 30 + [False]})

    def ratio(extra: pd.DataFrame) -> float:
        tables = dict(ds.tables)
        tables[c.ACTIVITIES] = coerce_table(c.ACTIVITIES, pd.concat([acts, extra], ignore_index=True))
        frame = build_training_frame(Dataset(tables, ds.custom_fields)).frame.set_index(c.ACTIVITY_ID)
        return float(frame.loc[extra[c.ACTIVITY_ID].iloc[-1], "deal_attention_vs_rep"])

    base = ratio(burst.iloc[[-1]])
    assert ratio(burst) > base * 1.5     # thirty hand-made calls first: a deal worked harder than usual
    assert ratio(robots) == pytest.approx(base, rel=0.3)  # thirty automated touches are not attention


def test_stage_features_and_outcome_labels_follow_the_contract():
    """Closed-lost is not an advance; re-entering a stage already reached is not either."""
    a = pd.DataFrame({
        c.ACTIVITY_ID: ["a1", "a2", "a3", "a4", "a5"],
        c.OCCURRED_AT: [T0 + d * DAY for d in (1, 11, 21, 31, 100)],
        c.TYPE: ["call"] * 5,
        c.DEAL_ID: ["d1"] * 5,
    })
    stages = pd.DataFrame({
        c.DEAL_ID: ["d1"] * 5,
        c.STAGE: ["s1", "s3", "s2", "s3", "lost"],
        c.STAGE_ORDER: [1, 3, 2, 3, 0],
        c.ENTERED_AT: [T0, T0 + 5 * DAY, T0 + 15 * DAY, T0 + 25 * DAY, T0 + 40 * DAY],
    })
    ds = Dataset({c.ACTIVITIES: coerce_table(c.ACTIVITIES, a), c.DEAL_STAGES: coerce_table(c.DEAL_STAGES, stages)})
    table = build_training_frame(ds, until=T0 + 120 * DAY)
    f = table.frame.set_index(c.ACTIVITY_ID)
    # a1 (day 1): stage 1 -> enters 3 on day 5: advance
    assert f.loc["a1", c.STAGE_ORDER] == 1 and f.loc["a1", s.LABEL_OUTCOME] == 1.0
    # a2 (day 11): back to 2 on day 15, no new high within 14 days
    assert f.loc["a2", c.STAGE_ORDER] == 3 and f.loc["a2", s.LABEL_OUTCOME] == 0.0
    # a3 (day 21): re-enters 3 on day 25, already reached: not an advance
    assert f.loc["a3", c.STAGE_ORDER] == 2 and f.loc["a3", s.LABEL_OUTCOME] == 0.0
    # a4 (day 31): closed-lost on day 40 is not an advance
    assert f.loc["a4", s.LABEL_OUTCOME] == 0.0
    assert f.loc["a4", "days_in_stage"] == pytest.approx(6.0)
    # a5 (day 100): horizon ends day 114 <= until (day 120): labelled
    assert f.loc["a5", c.STAGE_ORDER] == 0 and f.loc["a5", s.LABEL_OUTCOME] == 0.0


def test_labels_are_censored_at_the_end_of_the_data_not_zero():
    ds = make_history(n_activities=200, seed=5)
    table = build_training_frame(ds, until=T0 + 100 * DAY)
    f = table.frame
    end = table.data_end
    late_outcome = f[c.OCCURRED_AT] + 14 * DAY > end
    late_output = f[c.OCCURRED_AT] + 7 * DAY > end
    assert late_outcome.any() and late_output.any()
    assert f.loc[late_outcome, s.LABEL_OUTCOME].isna().all()
    assert f.loc[late_output, s.LABEL_OUTPUT].isna().all()
    assert f.loc[late_output, s.LABEL_NEGATIVE].isna().all()
    assert f.loc[~late_output, s.LABEL_OUTPUT].notna().all()


def test_until_uses_only_what_was_known_and_censors_at_until():
    ds = make_history(n_activities=300, seed=6, late_share=0.2)
    until = T0 + 60 * DAY
    table = build_training_frame(ds, until=until)
    f = table.frame
    a = ds[c.ACTIVITIES]
    known = a[a[[c.OCCURRED_AT, c.LOGGED_AT]].max(axis=1) < until]
    assert set(f[c.ACTIVITY_ID]) == set(known[c.ACTIVITY_ID])
    assert table.data_end == until
    assert f.loc[f[c.OCCURRED_AT] + 14 * DAY > until, s.LABEL_OUTCOME].isna().all()
    # the features of activities known at `until` equal those computed on the full data
    full = build_training_frame(ds).frame.set_index(c.ACTIVITY_ID)
    names = _features(table)
    pd.testing.assert_frame_equal(f.set_index(c.ACTIVITY_ID)[names], full.loc[f[c.ACTIVITY_ID], names])


def test_activity_without_deal_is_labelled_through_its_accounts_open_deals():
    a = pd.DataFrame({
        c.ACTIVITY_ID: ["x1", "x2", "x3"],
        c.OCCURRED_AT: [T0 + 2 * DAY, T0 + 2 * DAY, T0 + 2 * DAY],
        c.TYPE: ["email"] * 3,
        c.ACCOUNT_ID: ["acc1", "acc2", "acc3"],
    })
    deals = pd.DataFrame({
        c.DEAL_ID: ["d1", "d2"], c.ACCOUNT_ID: ["acc1", "acc2"],
        c.CREATED_AT: [T0, T0], c.CLOSED_AT: [None, T0 + DAY],  # d2 closed before the activity
    })
    outcomes = pd.DataFrame({c.DEAL_ID: ["d1", "d2"], c.OUTCOME: ["goals_agreed"] * 2,
                             c.OCCURRED_AT: [T0 + 5 * DAY, T0 + 5 * DAY]})
    ds = Dataset({c.ACTIVITIES: coerce_table(c.ACTIVITIES, a), c.DEALS: coerce_table(c.DEALS, deals),
                  c.OUTCOMES: coerce_table(c.OUTCOMES, outcomes)})
    f = build_training_frame(ds, until=T0 + 60 * DAY).frame.set_index(c.ACTIVITY_ID)
    assert f.loc["x1", s.LABEL_OUTCOME] == 1.0  # open deal d1 records an outcome
    assert np.isnan(f.loc["x2", s.LABEL_OUTCOME])  # its only deal was closed: no open deal
    assert np.isnan(f.loc["x3", s.LABEL_OUTCOME])  # no deal at all: left out


def test_planted_leak_activity_logged_after_its_outcome():
    """A call entered in the CRM after the win it precedes: flagged, and invisible before it is logged."""
    a = pd.DataFrame({
        c.ACTIVITY_ID: ["early", "backfilled", "later"],
        c.OCCURRED_AT: [T0, T0 + 2 * DAY, T0 + 4 * DAY],
        c.TYPE: ["call"] * 3,
        c.DEAL_ID: ["d1"] * 3,
        c.CONTACT_ID: ["c1"] * 3,
        c.LOGGED_AT: [T0, T0 + 10 * DAY, T0 + 4 * DAY],  # backfilled 10 days later, after the win
    })
    outcomes = pd.DataFrame({c.DEAL_ID: ["d1"], c.OUTCOME: ["closed_won"], c.OCCURRED_AT: [T0 + 3 * DAY]})
    ds = Dataset({c.ACTIVITIES: coerce_table(c.ACTIVITIES, a), c.OUTCOMES: coerce_table(c.OUTCOMES, outcomes)})
    f = build_training_frame(ds, until=T0 + 60 * DAY).frame.set_index(c.ACTIVITY_ID)
    assert bool(f.loc["backfilled", s.LEAK_FLAG]) is True
    assert bool(f.loc["early", s.LEAK_FLAG]) is False
    # at day 4 the back-filled call was not yet in the CRM: only `early` counts
    assert f.loc["later", "touches_contact_7d"] == 1.0
    assert f.loc["later", "days_since_touch_contact"] == pytest.approx(4.0)
    # and with --until before it was logged, it does not exist at all
    f2 = build_training_frame(ds, until=T0 + 5 * DAY).frame
    assert "backfilled" not in set(f2[c.ACTIVITY_ID])


def _append_after(ds: Dataset, t: pd.Timestamp, seed: int) -> Dataset:
    """The dataset plus random events that happen or are logged at or after ``t``."""
    rng = np.random.default_rng(seed)
    extra = make_history(n_activities=60, seed=seed + 100)
    tables = dict(ds.tables)
    acts = extra[c.ACTIVITIES].copy()
    shift = t - acts[c.OCCURRED_AT].min() + pd.Timedelta(minutes=int(rng.integers(0, 600)))
    acts[c.OCCURRED_AT] = acts[c.OCCURRED_AT] + shift
    acts[c.LOGGED_AT] = acts[c.LOGGED_AT] + shift
    acts[c.ACTIVITY_ID] = "new-" + acts[c.ACTIVITY_ID]
    # reuse existing deals and contacts so the new facts would matter if leaked
    old = ds[c.ACTIVITIES]
    acts[c.DEAL_ID] = rng.choice(old[c.DEAL_ID].dropna().to_numpy(), len(acts))
    acts[c.CONTACT_ID] = rng.choice(old[c.CONTACT_ID].dropna().to_numpy(), len(acts))
    # an old activity, logged only after t
    backfill = old.sample(5, random_state=seed).copy()
    backfill[c.ACTIVITY_ID] = "bf-" + backfill[c.ACTIVITY_ID]
    backfill[c.OCCURRED_AT] = t - pd.Timedelta(days=2)
    backfill[c.LOGGED_AT] = t + pd.Timedelta(hours=1)
    tables[c.ACTIVITIES] = pd.concat([old, acts, backfill], ignore_index=True)
    resp = extra[c.RESPONSES].copy()
    resp[c.ACTIVITY_ID] = "new-" + resp[c.ACTIVITY_ID]
    resp[c.OCCURRED_AT] = resp[c.OCCURRED_AT] + shift
    old_resp = ds[c.RESPONSES].sample(5, random_state=seed).copy()  # late responses to old activities
    old_resp[c.OCCURRED_AT] = t + pd.Timedelta(hours=3)
    tables[c.RESPONSES] = pd.concat([ds[c.RESPONSES], resp, old_resp], ignore_index=True)
    st_rows = pd.DataFrame({c.DEAL_ID: old[c.DEAL_ID].dropna().unique()[:5], c.STAGE: "s9", c.STAGE_ORDER: 9,
                            c.ENTERED_AT: t + pd.Timedelta(minutes=1)})
    tables[c.DEAL_STAGES] = pd.concat([ds[c.DEAL_STAGES], coerce_table(c.DEAL_STAGES, st_rows)], ignore_index=True)
    oc_rows = pd.DataFrame({c.DEAL_ID: old[c.DEAL_ID].dropna().unique()[:5], c.OUTCOME: "goals_agreed",
                            c.OCCURRED_AT: t})
    tables[c.OUTCOMES] = pd.concat([ds[c.OUTCOMES], coerce_table(c.OUTCOMES, oc_rows)], ignore_index=True)
    return Dataset(tables, ds.custom_fields)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cut_day=st.integers(10, 110))
def test_events_after_t_never_change_features_at_t(seed, cut_day):
    ds = make_history(n_activities=150, seed=seed % 50)
    t = T0 + pd.Timedelta(days=cut_day, minutes=seed % 997)
    before = build_training_frame(ds).frame.set_index(c.ACTIVITY_ID)
    after = build_training_frame(_append_after(ds, t, seed)).frame.set_index(c.ACTIVITY_ID)
    names = [f.name for f in s.BASE_FEATURES if f.family != "rep"]
    ids = before.index[before[c.OCCURRED_AT] <= t]
    pd.testing.assert_frame_equal(before.loc[ids, names], after.loc[ids, names])
    # the rep track record may only gain facts whose horizon closed before t: none here
    rep = ["rep_outcome_rate", "rep_labelled_activities"]
    pd.testing.assert_frame_equal(before.loc[ids, rep], after.loc[ids, rep])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_row_order_changes_nothing(seed):
    ds = make_history(n_activities=150, seed=seed % 40)
    rng = np.random.default_rng(seed)
    shuffled = Dataset(
        {name: frame.iloc[rng.permutation(len(frame))].reset_index(drop=True) for name, frame in ds.tables.items()},
        ds.custom_fields,
    )
    a = build_training_frame(ds).frame
    b = build_training_frame(shuffled).frame
    pd.testing.assert_frame_equal(a, b)


def _assert_parity(ds: Dataset, ids: list[str]) -> int:
    table = build_training_frame(ds)
    offline = table.frame.set_index(c.ACTIVITY_ID)
    names = _features(table)
    checked = 0
    for aid in ids:
        t = offline.loc[aid, c.OCCURRED_AT]
        context = rep_context(ds, table, at=t)
        online = build_serving_frame(request_items(ds, [aid]), context)
        want = offline.loc[[aid], names].reset_index(drop=True)
        pd.testing.assert_frame_equal(online[names], want, check_exact=False, rtol=1e-12, obj=f"activity {aid}")
        checked += 1
    return checked


def test_serving_path_matches_training_path():
    ds = make_history(n_activities=200, seed=7, late_share=0.2)
    ids = ds[c.ACTIVITIES][c.ACTIVITY_ID].tolist()[::2]
    assert _assert_parity(ds, ids) == 100


@pytest.mark.slow
def test_serving_path_matches_training_path_over_thousands_of_cases():
    checked = 0
    for seed in range(8):
        ds = make_history(n_activities=300, n_deals=10 + seed, n_contacts=15 + 2 * seed, seed=100 + seed,
                          late_share=0.05 * seed)
        checked += _assert_parity(ds, ds[c.ACTIVITIES][c.ACTIVITY_ID].tolist())
    assert checked == 2400


def test_serving_batch_items_do_not_see_each_other():
    ds = make_history(n_activities=200, seed=8)
    table = build_training_frame(ds)
    ids = ds[c.ACTIVITIES][c.ACTIVITY_ID].tolist()[50:60]
    context = rep_context(ds, table)
    batch = build_serving_frame(request_items(ds, ids), context)
    one_by_one = pd.concat([build_serving_frame(request_items(ds, [i]), context) for i in ids], ignore_index=True)
    pd.testing.assert_frame_equal(batch, one_by_one)


def test_serving_ignores_history_rows_at_or_after_the_activity():
    ds = make_history(n_activities=200, seed=9)
    table = build_training_frame(ds)
    aid = ds[c.ACTIVITIES][c.ACTIVITY_ID].iloc[120]
    context = rep_context(ds, table)
    items = request_items(ds, [aid])
    t = pd.Timestamp(items[0]["activity"][c.OCCURRED_AT])
    trimmed = [{**items[0], "history": {k: [r for r in rows if pd.Timestamp(
        r.get(c.OCCURRED_AT) or r.get(c.ENTERED_AT) or r.get(c.OCCURRED_AT) or t - DAY) < t] if k != c.CONTACTS else rows
        for k, rows in items[0]["history"].items()}}]
    pd.testing.assert_frame_equal(build_serving_frame(items, context), build_serving_frame(trimmed, context))


def test_request_stage_without_entry_time_sets_stage_order_only():
    item = {"activity": {"type": "call", "occurred_at": "2026-03-02T15:04:00Z"},
            "deal": {"deal_id": "d", "stage_order": 3}}
    frame = build_serving_frame([item])
    assert frame[c.STAGE_ORDER].iloc[0] == 3.0 and np.isnan(frame["days_in_stage"].iloc[0])
    item["deal"]["stage_entered_at"] = "2026-02-20T15:04:00Z"
    frame = build_serving_frame([item])
    assert frame["days_in_stage"].iloc[0] == pytest.approx(10.0)


def test_request_history_with_repeated_or_missing_activity_ids_is_scored_not_refused():
    # activity_id is optional in a request's history, and a CRM may send a row twice
    history = {
        c.ACTIVITIES: [
            {"activity_id": "h1", "type": "email", "contact_id": "p", "occurred_at": "2026-02-20T10:00:00Z"},
            {"activity_id": "h1", "type": "email", "contact_id": "p", "occurred_at": "2026-02-20T10:00:00Z"},
            {"type": "call", "contact_id": "p", "occurred_at": "2026-02-25T10:00:00Z"},
            {"type": "call", "contact_id": "p", "occurred_at": "2026-02-26T10:00:00Z"},
        ],
        c.RESPONSES: [{"activity_id": "h1", "response": "replied", "occurred_at": "2026-02-21T10:00:00Z"}],
    }
    item = {"activity": {"type": "call", "contact_id": "p", "occurred_at": "2026-03-02T15:04:00Z"},
            "history": history}
    frame = build_serving_frame([item])
    assert len(frame) == 1
    assert frame["touches_contact_30d"].iloc[0] == 4
    assert frame["outputs_contact_30d"].iloc[0] == 1  # the reply counts once, on the (last) h1 row


def test_hour_and_weekday_follow_the_configured_time_zone():
    a = pd.DataFrame({c.ACTIVITY_ID: ["w", "s"], c.TYPE: ["call", "call"],
                      # 2026-01-09 was a Friday; 23:30 UTC is Saturday 00:30 in Berlin (winter, +1)
                      c.OCCURRED_AT: ["2026-01-09T23:30:00Z", "2026-07-10T23:30:00Z"]})
    ds = Dataset({c.ACTIVITIES: coerce_table(c.ACTIVITIES, a)})
    utc = build_training_frame(ds, until="2026-12-31").frame.set_index(c.ACTIVITY_ID)
    berlin = build_training_frame(ds, until="2026-12-31", timezone="Europe/Berlin").frame.set_index(c.ACTIVITY_ID)
    assert (utc.loc["w", "hour_local"], utc.loc["w", "weekday_local"]) == (23, 4)
    assert (berlin.loc["w", "hour_local"], berlin.loc["w", "weekday_local"]) == (0, 5)
    assert berlin.loc["s", "hour_local"] == 1  # summer time, +2


def test_custom_fields_become_features_with_timing_from_the_dataset():
    ds = make_history(n_activities=80, seed=10)
    ds.execution_time_fields = {"activities.template"}
    table = build_training_frame(ds)
    by_name = {f.name: f for f in table.features}
    assert by_name["cf_activities_template"].timing == s.EXECUTION
    assert by_name["cf_deals_deal_tier"].timing == s.PLAN
    assert by_name["cf_deals_deal_tier"].kind == s.CATEGORICAL
    assert set(table.frame["cf_deals_deal_tier"].dropna()) <= {"gold", "silver"}


def test_horizons_are_configurable():
    ds = make_history(n_activities=200, seed=11)
    short = build_training_frame(ds, horizons=Horizons(outcome_days=3, output_days=1)).frame
    long = build_training_frame(ds, horizons=Horizons(outcome_days=30, output_days=14)).frame
    both = short[s.LABEL_OUTCOME].notna() & long[s.LABEL_OUTCOME].notna()
    assert (short.loc[both, s.LABEL_OUTCOME] <= long.loc[both, s.LABEL_OUTCOME]).all()
    assert short.loc[both, s.LABEL_OUTCOME].sum() < long.loc[both, s.LABEL_OUTCOME].sum()


def test_serving_context_round_trips_through_json():
    import json

    from features.build import context_from_dict, context_to_dict

    ds = make_history(n_activities=150, seed=12)
    table = build_training_frame(ds)
    context = rep_context(ds, table, timezone="Europe/Berlin")
    again = context_from_dict(json.loads(json.dumps(context_to_dict(context))))
    assert again == context
    assert again.reps and any(r.labelled > 0 for r in again.reps.values())
