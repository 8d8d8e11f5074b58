"""A small synthetic training table with a planted signal, for tests, benchmarks and notebooks.

It has the shape of ``features.build.TrainingTable`` (``frame``, ``features``,
``data_end``) without going through the feature pipeline, so model code can be
exercised in a second. The true probabilities it drew the labels from are returned
too, so ground-truth metrics can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import contract as c
from features.schema import CATEGORICAL, EXECUTION, ID_COLUMNS, LABELS, LEAK_FLAG, NUMERIC, PLAN, Feature

TYPES = ("call", "email", "meeting", "demo", "inmail")
TYPE_EFFECT = {"call": 0.2, "email": -0.5, "meeting": 0.8, "demo": 1.0, "inmail": -0.8}
SENIORITIES = ("c_level", "vp", "director", "manager", "individual_contributor")
SENIORITY_EFFECT = {"c_level": 0.6, "vp": 0.4, "director": 0.2, "manager": 0.0, "individual_contributor": -0.3}
LEAK_COLUMN = "cf_activities_result_code"
LATE_COLUMN = "cf_activities_next_step"


@dataclass
class SyntheticTable:
    """Duck-types ``features.build.TrainingTable``; ``truth`` holds the true probabilities."""

    frame: pd.DataFrame
    features: list[Feature]
    data_end: pd.Timestamp
    truth: pd.DataFrame


def synthetic_features(leak: bool = False, late_field: bool = False) -> list[Feature]:
    feats = [
        Feature(c.TYPE, "activity", CATEGORICAL, PLAN, "activity type {v}"),
        Feature(c.PERSONALIZATION, "activity", NUMERIC, PLAN, "personalization {v}", "0..1"),
        Feature("touches_contact_7d", "cadence", NUMERIC, PLAN, "{v} touches in 7 days", "activities"),
        Feature(c.STAGE_ORDER, "deal", NUMERIC, PLAN, "deal at stage {v}", "stage order"),
        Feature(c.SENIORITY, "contact", CATEGORICAL, PLAN, "reaches a {v}"),
        Feature("noise", "activity", NUMERIC, PLAN, "noise {v}"),
        Feature(c.DURATION_S, "activity", NUMERIC, EXECUTION, "lasted {v} seconds", "seconds"),
    ]
    if leak:
        feats.append(Feature(LEAK_COLUMN, "custom", NUMERIC, PLAN, "result code {v}"))
    if late_field:
        feats.append(Feature(LATE_COLUMN, "custom", CATEGORICAL, PLAN, "next step {v}"))
    return feats


def make_training_table(
    n_activities: int = 6000,
    seed: int = 0,
    start: str = "2025-01-01",
    days: int = 365,
    leak: bool = False,
    late_field: bool = False,
    signal: float = 1.0,
    outcome_days: int = 14,
    output_days: int = 7,
    drop_execution: bool = False,
) -> SyntheticTable:
    """Draw a training table: one row per activity, sorted by ``occurred_at``.

    Args:
        n_activities: rows.
        seed: random seed (same seed, same table).
        start: first day; activities spread uniformly over ``days`` days.
        leak: add a custom field that copies the outcome label (with 2% noise).
        late_field: add a custom activity field filled only for activities older than 30 days.
        signal: multiplies every planted effect (0 = labels are pure noise).
        outcome_days, output_days: horizons used to censor labels at the end.
        drop_execution: leave out the execution-time feature (duration).
    """
    rng = np.random.default_rng(seed)
    n = n_activities
    t0 = pd.Timestamp(start, tz="UTC")
    offsets = np.sort(rng.uniform(0, days * 86400, size=n))
    occurred = t0 + pd.to_timedelta(offsets, unit="s")
    data_end = t0 + pd.Timedelta(days=days)

    types = rng.choice(TYPES, size=n, p=[0.3, 0.35, 0.15, 0.1, 0.1])
    seniority = rng.choice(SENIORITIES, size=n)
    personalization = rng.uniform(0, 1, size=n)
    touches = rng.poisson(2.0, size=n).astype(float)
    stage = rng.integers(1, 6, size=n).astype(float)
    noise = rng.normal(size=n)
    duration = np.where(np.isin(types, ["call", "meeting", "demo"]), rng.gamma(2.0, 300.0, size=n), np.nan)

    te = np.vectorize(TYPE_EFFECT.get)(types)
    se = np.vectorize(SENIORITY_EFFECT.get)(seniority)
    logit_out = -2.2 + signal * (te + se + 1.2 * personalization - 0.25 * touches + 0.2 * stage)
    logit_output = -1.5 + signal * (0.6 * te + 1.5 * personalization - 0.2 * touches
                                    + 0.001 * np.nan_to_num(duration, nan=0.0))
    logit_neg = -3.5 + signal * (0.35 * touches - 1.0 * personalization)
    p_outcome = 1 / (1 + np.exp(-logit_out))
    p_output = 1 / (1 + np.exp(-logit_output))
    p_negative = 1 / (1 + np.exp(-logit_neg))
    y_outcome = (rng.uniform(size=n) < p_outcome).astype(float)
    y_output = (rng.uniform(size=n) < p_output).astype(float)
    y_negative = (rng.uniform(size=n) < p_negative).astype(float)

    # Censor labels whose horizon passes the end of the data.
    age_days = (data_end - occurred) / pd.Timedelta(days=1)
    y_outcome[np.asarray(age_days <= outcome_days)] = np.nan
    y_output[np.asarray(age_days <= output_days)] = np.nan
    y_negative[np.asarray(age_days <= output_days)] = np.nan

    ids = pd.array([f"a-{i}" for i in range(n)], dtype="string")
    frame = pd.DataFrame({
        c.ACTIVITY_ID: ids,
        c.OCCURRED_AT: occurred,
        c.DEAL_ID: pd.array([f"d-{i % 500}" for i in range(n)], dtype="string"),
        c.CONTACT_ID: pd.array([f"c-{i % 900}" for i in range(n)], dtype="string"),
        c.ACCOUNT_ID: pd.array([f"acc-{i % 120}" for i in range(n)], dtype="string"),
        c.REP_ID: pd.array([f"r-{i % 12}" for i in range(n)], dtype="string"),
        c.TYPE: pd.array(types, dtype="string"),
        c.PERSONALIZATION: personalization,
        "touches_contact_7d": touches,
        c.STAGE_ORDER: stage,
        c.SENIORITY: pd.array(np.where(rng.uniform(size=n) < 0.05, None, seniority), dtype="string"),
        "noise": noise,
        c.DURATION_S: duration,
    })
    if leak:
        flip = rng.uniform(size=n) < 0.02
        leaked = np.where(flip, 1 - np.nan_to_num(y_outcome, nan=0.0), np.nan_to_num(y_outcome, nan=0.0))
        frame[LEAK_COLUMN] = leaked * 7.0 + rng.normal(0, 0.1, size=n)
    if late_field:
        filled = np.asarray(age_days > 30)
        frame[LATE_COLUMN] = pd.array(np.where(filled, rng.choice(["follow_up", "close"], size=n), None),
                                      dtype="string")
    features = synthetic_features(leak, late_field)
    if drop_execution:
        frame = frame.drop(columns=[c.DURATION_S])
        features = [f for f in features if f.name != c.DURATION_S]
    frame[LABELS["outcome"]] = y_outcome
    frame[LABELS["output"]] = y_output
    frame[LABELS["negative"]] = y_negative
    frame[LEAK_FLAG] = rng.uniform(size=n) < 0.01
    cols = ID_COLUMNS + [f.name for f in features] + list(LABELS.values()) + [LEAK_FLAG]
    truth = pd.DataFrame({
        c.ACTIVITY_ID: ids,
        "p_outcome": p_outcome,
        "p_output": p_output,
        "p_negative": p_negative,
    })
    return SyntheticTable(frame[cols], features, data_end, truth)
