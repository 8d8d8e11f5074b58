"""One definition of an advance, shared by the outcome label and the dataset summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import contract as c
from features import schema as s
from features.advances import advance_events, stage_advance_mask, stage_advances_frame
from features.build import build_training_frame
from features.dataset import Dataset, coerce_table
from features.validation import stage_advances, summarize_dataset
from tests.features.factory import T0, make_history

DAY = pd.Timedelta(days=1)


def _mid_life_export() -> Dataset:
    """d1's stage history starts mid-life at order 3 on day 10; d2 starts at 1 and moves to 2 on day 12."""
    acts = pd.DataFrame({
        c.ACTIVITY_ID: ["a1", "a2", "a3"],
        c.OCCURRED_AT: [T0 + 2 * DAY, T0 + 2 * DAY, T0 + 30 * DAY],
        c.TYPE: ["call"] * 3,
        c.DEAL_ID: ["d1", "d2", "d1"],
    })
    stages = pd.DataFrame({
        c.DEAL_ID: ["d1", "d2", "d2", "d1"],
        c.STAGE: ["s3", "s1", "s2", "lost"],
        c.STAGE_ORDER: [3, 1, 2, 0],
        c.ENTERED_AT: [T0 + 10 * DAY, T0, T0 + 12 * DAY, T0 + 35 * DAY],
    })
    return Dataset({c.ACTIVITIES: coerce_table(c.ACTIVITIES, acts), c.DEAL_STAGES: coerce_table(c.DEAL_STAGES, stages)})


def test_a_deals_first_stage_row_is_not_an_advance_for_the_label():
    ds = _mid_life_export()
    f = build_training_frame(ds, until=T0 + 80 * DAY).frame.set_index(c.ACTIVITY_ID)
    assert f.loc["a1", s.LABEL_OUTCOME] == 0.0  # d1's first known row (day 10) is where its history starts
    assert f.loc["a2", s.LABEL_OUTCOME] == 1.0  # d2 moves 1 -> 2 on day 12
    assert f.loc["a3", s.LABEL_OUTCOME] == 0.0  # closed-lost is never an advance


def test_label_summary_and_event_list_agree():
    ds = _mid_life_export()
    stages = ds[c.DEAL_STAGES]
    assert stage_advances(stages).tolist() == [False, False, True, False]
    assert stage_advances_frame(stages).tolist() == [False, False, True, False]
    assert summarize_dataset(ds).n_stage_advances == 1
    ev = advance_events(ds)
    assert ev[c.DEAL_ID].tolist() == ["d2"] and ev[c.OCCURRED_AT].tolist() == [T0 + 12 * DAY]
    assert ev["kind"].tolist() == ["stage_advance"]


def test_every_positive_label_has_an_advance_event_in_its_horizon_and_no_negative_has():
    ds = make_history(n_activities=400, n_deals=15, seed=3)
    table = build_training_frame(ds, until=T0 + 110 * DAY)
    f = table.frame
    ev = advance_events(ds)
    ev = ev[ev[c.OCCURRED_AT] < T0 + 110 * DAY]
    labelled = f[f[s.LABEL_OUTCOME].notna() & f[c.DEAL_ID].notna()]
    assert len(labelled) > 100
    for _, row in labelled.iterrows():
        t = row[c.OCCURRED_AT]
        e = ev[(ev[c.DEAL_ID] == row[c.DEAL_ID]) & (ev[c.OCCURRED_AT] >= t) & (ev[c.OCCURRED_AT] <= t + 14 * DAY)]
        assert (len(e) > 0) == (row[s.LABEL_OUTCOME] == 1.0), row[c.ACTIVITY_ID]


def test_mask_ties_and_input_order():
    # one deal: two rows at its first instant (orders 1 and 2): the higher one is an advance
    deal = np.array([0, 0, 0, 1])
    t = np.array([5, 5, 9, 1])
    order = np.array([2.0, 1.0, 2.0, 4.0])
    assert stage_advance_mask(deal, t, order).tolist() == [True, False, False, False]
