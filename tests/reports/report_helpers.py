"""Fixtures' builders for the manager report tests: a small simulated world and a bundle trained on it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c

IDLE_REP = "rep-idle"


def simulate_dataset(out: Path, n_activities: int = 8000, seed: int = 5) -> Path:
    """A simulated dataset (with its ground truth) plus one rep in the reps table who never did anything."""
    from simulator.generate import simulate, write_simulation
    from simulator.params import SimulationConfig

    sim = simulate(SimulationConfig(n_activities=n_activities, seed=seed))
    write_simulation(sim, out)
    reps = pd.read_parquet(out / "reps.parquet")
    idle = reps.iloc[[0]].copy()
    idle[c.REP_ID] = IDLE_REP
    pd.concat([reps, idle], ignore_index=True).to_parquet(out / "reps.parquet", index=False)
    return out


def train_with_effects(data: Path, out: Path, effects: bool = True) -> Path:
    """A small bundle (few trees) on ``data``, with the effects model training fits, saved to ``out``."""
    from features.build import build_training_frame, context_to_dict, rep_context
    from features.dataset import load_dataset
    from tests.serving.helpers import CONTEXT_FILE, small_config
    from training.data import LoadedData
    from training.effects import fit_effect_model
    from training.train import run_training

    logging.getLogger("models.calibration").setLevel(logging.ERROR)
    dataset = load_dataset(data)
    table = build_training_frame(dataset)
    loaded = LoadedData(table)
    loaded.dataset = dataset
    result = run_training(loaded, small_config())
    result.bundle.save(out)
    if not (out / CONTEXT_FILE).exists():
        import json

        (out / CONTEXT_FILE).write_text(json.dumps(context_to_dict(rep_context(dataset, table))), encoding="utf-8")
    if effects:
        model = fit_effect_model(dataset, table.frame, result.bundle.spec, until=result.split.test_start)
        model.save(out)
    return out


def independent_counts(data: Path, since: pd.Timestamp, until: pd.Timestamp) -> pd.DataFrame:
    """Per rep, straight from the tables (no report code): activities, outputs, negatives, automated,
    advanced (from the ground truth's labels), deal advances and recorded outcomes on the rep's deals."""
    acts = pd.read_parquet(data / "activities.parquet")
    resp = pd.read_parquet(data / "responses.parquet")
    stages = pd.read_parquet(data / "deal_stages.parquet")
    outcomes = pd.read_parquet(data / "outcomes.parquet")
    deals = pd.read_parquet(data / "deals.parquet")
    win = acts[(acts[c.OCCURRED_AT] >= since) & (acts[c.OCCURRED_AT] < until) & (acts[c.TYPE] != "none")]
    rows = {}
    owner = dict(zip(deals[c.DEAL_ID], deals[c.OWNER_REP_ID], strict=True))
    ids_by_rep = {rep: set(g[c.ACTIVITY_ID]) for rep, g in win.groupby(c.REP_ID)}
    for rep, ids in ids_by_rep.items():
        r = resp[resp[c.ACTIVITY_ID].isin(ids)]
        g = win[win[c.REP_ID] == rep]
        rows[rep] = {
            "activities": len(ids),
            "outputs": int(r[c.RESPONSE].isin(["replied", "positive_reply", "connected", "meeting_booked"]).sum()),
            "with_output": int(r[r[c.RESPONSE].isin(["replied", "positive_reply", "connected",
                                                     "meeting_booked"])][c.ACTIVITY_ID].nunique()),
            "negatives": int(r[c.RESPONSE].isin(["negative_reply", "unsubscribed"]).sum()),
            "automated": int(g[c.IS_AUTOMATED].fillna(False).astype(bool).sum()),
            "deal_advances": 0, "recorded_outcomes": 0,
        }
    for deal, g in stages.sort_values([c.ENTERED_AT, c.STAGE_ORDER]).groupby(c.DEAL_ID):
        best = None
        for order, at in zip(g[c.STAGE_ORDER], g[c.ENTERED_AT], strict=True):
            if best is not None and order > 0 and order > best and since <= at < until:
                rep = owner.get(deal)
                if rep in rows:
                    rows[rep]["deal_advances"] += 1
            best = order if best is None else max(best, order)
    for deal, at in zip(outcomes[c.DEAL_ID], outcomes[c.OCCURRED_AT], strict=True):
        if since <= at < until and owner.get(deal) in rows:
            rows[owner[deal]]["recorded_outcomes"] += 1
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def finite(values) -> np.ndarray:  # noqa: ANN001
    return np.array([np.nan if v is None else v for v in values], dtype=float)
