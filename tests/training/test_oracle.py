"""Which ground-truth column is the outcome oracle, and what is reported beside it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.train import LabelTruth, _align_truth, _truth_metrics


def _frame_and_truth(n=400, with_ex_ante=True, sampled=0.2, seed=0):
    rng = np.random.default_rng(seed)
    ids = pd.array([f"act-{i}" for i in range(n)], dtype="string")
    frame = pd.DataFrame({"activity_id": ids[::-1]})  # another order than the truth file
    truth = pd.DataFrame({"activity_id": ids, "p_outcome": rng.uniform(size=n),
                          "p_outcome_label": rng.uniform(size=n), "p_output": rng.uniform(size=n),
                          "p_negative": rng.uniform(size=n)})
    if with_ex_ante:
        ex = rng.uniform(size=n)
        ex[rng.uniform(size=n) >= sampled] = np.nan
        truth["p_outcome_label_ex_ante"] = ex
    return frame, truth


def test_the_ex_ante_oracle_is_the_outcome_yardstick_and_the_realized_one_is_kept():
    frame, truth = _frame_and_truth()
    aligned = _align_truth(frame, truth)
    out = aligned["outcome"]
    assert out.column == "p_outcome_label_ex_ante"
    by_id = truth.set_index("activity_id")
    expected = by_id.loc[frame["activity_id"], "p_outcome_label_ex_ante"].to_numpy()
    np.testing.assert_array_equal(out.values, expected)  # aligned by id, NaN where not sampled
    np.testing.assert_array_equal(out.realized, by_id.loc[frame["activity_id"], "p_outcome_label"].to_numpy())
    assert aligned["output"].column == "p_output" and aligned["output"].realized is None


@pytest.mark.parametrize("with_ex_ante", [False, True])
def test_older_simulations_fall_back_to_the_realized_schedule_oracle(with_ex_ante):
    frame, truth = _frame_and_truth(with_ex_ante=with_ex_ante, sampled=0.0)  # column absent or all NaN
    out = _align_truth(frame, truth)["outcome"]
    assert out.column == "p_outcome_label" and out.realized is None


def test_oracle_metrics_count_only_the_sampled_rows_and_name_both_oracles():
    rng = np.random.default_rng(1)
    n = 2000
    p_true = rng.uniform(0.01, 0.6, size=n)
    y = (rng.uniform(size=n) < p_true).astype(float)
    ex_ante = np.where(rng.uniform(size=n) < 0.25, p_true, np.nan)
    realized = np.clip(p_true + (y - 0.5) * 0.4, 0, 1)  # knows more than the past: a better oracle
    model = np.clip(p_true + rng.normal(0, 0.15, size=n), 0.001, 0.999)
    te = np.arange(n)
    m = _truth_metrics(y, model, LabelTruth("p_outcome_label_ex_ante", ex_ante, realized), te)
    assert m["n_truth"] == np.isfinite(ex_ante).sum()
    assert m["n_truth_realized"] == n
    assert m["oracle_gap"] == pytest.approx(m["oracle_auc"] - m["auc_same_rows"])
    assert m["oracle_gap"] > 0  # the truth ranks better than a noisy copy of it
    assert m["oracle_auc_realized"] > m["oracle_auc"]
    assert m["oracle_gap_realized"] == pytest.approx(m["oracle_auc_realized"] - m["auc_same_rows_realized"])
