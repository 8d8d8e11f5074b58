"""Drifting synthetic histories for the refit, recalibration and monitor tests (issue 15)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from features import contract as c
from features.schema import LABELS
from training.synthetic import SyntheticTable, make_training_table


def drifting_table(n: int = 16_000, days: int = 480, seed: int = 0, flip_day: int = 200,
                   before: float = -1.0, after: float = 2.5, shift_day: int | None = None,
                   shift: float = 0.0) -> SyntheticTable:
    """A table whose outcome depends on personalization with slope ``before`` until ``flip_day``, ``after`` since.

    With ``shift_day``, the outcome's log-odds also move by ``shift`` from that day on (the
    base rate drifts while the ranking stays: what recalibration can mend). Output and
    negative labels keep the synthetic table's stable signal.
    """
    t = make_training_table(n, seed=seed, days=days)
    rng = np.random.default_rng(seed + 100)
    frame = t.frame.copy()
    age = (frame[c.OCCURRED_AT] - frame[c.OCCURRED_AT].iloc[0]) / pd.Timedelta(days=1)
    age = age.to_numpy(dtype=np.float64)
    x = frame[c.PERSONALIZATION].to_numpy(dtype=np.float64)
    stage = frame[c.STAGE_ORDER].to_numpy(dtype=np.float64)
    slope = np.where(age < flip_day, before, after)
    logit = -2.0 + slope * (x - 0.5) * 2 + 0.3 * (stage - 3)
    if shift_day is not None:
        logit = logit + np.where(age >= shift_day, shift, 0.0)
    p = 1 / (1 + np.exp(-logit))
    y = (rng.uniform(size=n) < p).astype(float)
    y[np.isnan(frame[LABELS["outcome"]].to_numpy(dtype=np.float64))] = np.nan
    frame[LABELS["outcome"]] = y
    truth = t.truth.assign(p_outcome=p)
    return dataclasses.replace(t, frame=frame, truth=truth)
