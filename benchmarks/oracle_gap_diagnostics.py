"""Diagnostics behind docs/training.md "The oracle target, honestly": the outcome gap per seed.

For each seed, simulates ``--n`` activities with the ex-ante oracle on every activity (cached
in ``--work``), trains the outcome models in-process with ``training.train.run_training``
(``labels: [outcome]``) and prints, for the full and plan models, the gap (ex-ante oracle AUC
minus the model's, on the whole test window) and the ECE; then the mean and max over seeds.

``--extra`` adds diagnostic columns to the training table before training. They are not
product features, and some are not point in time (said below); they answer "how much of
the gap would this information close":

- ``quality``, ``skill``: the simulator's latent deal quality and rep skill (ground truth).
- ``amount_rel``: log amount minus the median log amount of all deals of the same team and
  product (whole history: not point in time).
- ``lifetime``: hand-made touches to the deal so far per day of its age, over the rep's
  expanding mean of the same (row order, not logged_at).
- ``manual``, ``attention``: hand-made touches to the deal in 30 days, and that over the
  rep's expanding mean.
- ``inbound``: inbound activities of the deal so far.
- ``resprate``: the deal's past output rate (labels of activities over 7 days old), smoothed.
- ``repman_pit``: the rep's outcome rate over hand-made activities whose horizon closed
  before t, smoothed (point in time).

``--set key=JSON`` overrides config fields (e.g. ``exclude_features='["amount_vs_typical"]'``).

    .venv/bin/python benchmarks/oracle_gap_diagnostics.py [--n 200000] [--seeds 0 7 8 9 10 11 12]
        [--extra quality ...] [--set key=JSON ...] [--work /tmp/diag]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from features.schema import Feature  # noqa: E402

EXTRAS = ("quality", "skill", "amount_rel", "lifetime", "manual", "attention", "inbound", "resprate", "repman_pit")
NEW_FEATURES = ["hand_touches_deal_per_day", "deal_attention_vs_rep", "amount_vs_typical"]


def _rep_expanding_mean(values: pd.Series, rep: np.ndarray) -> pd.Series:
    return values.groupby(rep).transform(lambda x: x.shift(1).expanding().mean())


def add_extras(loaded, names: list[str]):
    """The loaded table with the diagnostic columns ``names`` added as numeric plan features."""
    f = loaded.table.frame.copy()
    new: dict[str, np.ndarray] = {}
    truth = loaded.truth.drop_duplicates("activity_id").set_index("activity_id")
    ids = f["activity_id"].astype("string")
    if "quality" in names:
        new["x_quality"] = truth["quality"].reindex(ids).to_numpy()
    if "skill" in names:
        new["x_skill"] = truth["rep_skill"].reindex(ids).to_numpy()
    order = np.argsort(f["occurred_at"].to_numpy(), kind="stable")
    g = f.iloc[order]
    rep = g["rep_id"].astype("string").fillna("?").to_numpy()
    deal = g["deal_id"].astype("string").fillna("?").to_numpy()
    if "manual" in names or "attention" in names:
        manual = g["touches_deal_30d"] * (1 - g["automated_share_deal_30d"].fillna(0))
        if "manual" in names:
            new["x_manual_deal_30d"] = manual.reindex(f.index).to_numpy(dtype=float)
        if "attention" in names:
            new["x_attention"] = (manual / _rep_expanding_mean(manual, rep)).reindex(f.index).to_numpy(dtype=float)
    if "lifetime" in names:
        hand = (g["is_automated"].fillna(0) == 0).astype(float)
        count = hand.groupby(deal).cumsum() - hand
        life = count / g["deal_age_days"].clip(lower=1)
        new["x_lifetime_rate"] = (life / _rep_expanding_mean(life, rep)).reindex(f.index).to_numpy(dtype=float)
    if "inbound" in names:
        inbound = (g["direction"].astype("string") == "inbound").fillna(False).astype(float)
        new["x_inbound_deal"] = (inbound.groupby(deal).cumsum() - inbound).reindex(f.index).to_numpy(dtype=float)
    if "amount_rel" in names:
        log_amount = np.log(f["amount"].astype(float))
        key = f["team"].astype("string").fillna("?") + "|" + f["product"].astype("string").fillna("?")
        deals = pd.DataFrame({"deal": f["deal_id"], "key": key, "la": log_amount}).drop_duplicates("deal")
        new["x_amount_rel"] = (log_amount - key.map(deals.groupby("key")["la"].median())).to_numpy(dtype=float)
    if "resprate" in names:
        new["x_resprate"] = _past_rate(f, "deal_id", "label_output", 7, touches_only=True, strength=5)
    if "repman_pit" in names:
        new["x_repman"] = _past_rate(f, "rep_id", "label_outcome", 14, touches_only=False, strength=20,
                                     hand_made_only=True)
    feats = list(loaded.table.features)
    for name, values in new.items():
        f[name] = values
        feats.append(Feature(name, "diagnostic", "numeric", "plan", name + " {v}"))
    return dataclasses.replace(loaded, table=dataclasses.replace(loaded.table, frame=f, features=feats))


def _past_rate(f: pd.DataFrame, key: str, label: str, horizon_days: int, *, touches_only: bool, strength: float,
               hand_made_only: bool = False) -> np.ndarray:
    """Smoothed rate of ``label`` over the key's earlier rows whose horizon closed before t."""
    rows = f[f[key].notna() & f[label].notna()].copy()
    if touches_only:
        rows = rows[rows["type"].astype(str) != "none"]
    if hand_made_only:
        rows = rows[rows["is_automated"].fillna(0) == 0]
    rows["close"] = rows["occurred_at"] + pd.Timedelta(days=horizon_days)
    rows["k"] = rows[key].astype(str)
    rows = rows.sort_values("close", kind="stable")
    rows["cs"] = rows.groupby("k")[label].cumsum()
    rows["cn"] = rows.groupby("k").cumcount() + 1
    left = pd.DataFrame({"row": np.arange(len(f)), "occurred_at": f["occurred_at"].to_numpy(),
                         "k": f[key].astype(str).to_numpy()}).sort_values("occurred_at", kind="stable")
    right = rows[["k", "close", "cs", "cn"]].rename(columns={"close": "occurred_at"})
    merged = pd.merge_asof(left, right, on="occurred_at", by="k", allow_exact_matches=False)
    prior = rows[label].mean()
    rate = (merged["cs"].fillna(0) + strength * prior) / (merged["cn"].fillna(0) + strength)
    out = np.full(len(f), np.nan)
    out[merged["row"].to_numpy()] = rate.to_numpy()
    return out


def main() -> None:
    from simulator.generate import simulate, write_simulation
    from simulator.params import OracleSettings, SimulationConfig
    from training.config import load_config
    from training.data import load_table
    from training.train import run_training

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 7, 8, 9, 10, 11, 12])
    parser.add_argument("--extra", nargs="*", default=[], choices=EXTRAS)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="Config overrides.")
    parser.add_argument("--without-new-features", action="store_true",
                        help=f"Exclude {', '.join(NEW_FEATURES)} (the state before they were added).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/oracle-gap-diagnostics"))
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    if args.without_new_features:
        overrides["exclude_features"] = overrides.get("exclude_features", []) + NEW_FEATURES
    rows = []
    for seed in args.seeds:
        data = args.work / f"sim-{args.n}-seed{seed}-oracle1"
        if not (data / "activities.parquet").exists():
            write_simulation(simulate(SimulationConfig(n_activities=args.n, seed=seed),
                                      oracle=OracleSettings(share=1.0)), data)
        cfg = load_config(labels=["outcome"], **overrides)
        loaded = load_table(data, cfg)
        if args.extra:
            loaded = add_extras(loaded, args.extra)
        t0 = time.perf_counter()
        result = run_training(loaded, cfg)
        out = []
        for variant in ("full", "plan"):
            m = result.fits[("outcome", variant)].metrics
            out.append((m["truth"]["oracle_gap"], m["test"]["ece"], m["truth"].get("ece_truth")))
        print(f"seed {seed}: full gap {out[0][0]:+.4f} ECE {out[0][1]:.4f} (vs truth {out[0][2]:.4f}) | plan gap "
              f"{out[1][0]:+.4f} ECE {out[1][1]:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        rows.append([out[0][0], out[0][1], out[1][0], out[1][1]])
    r = np.array(rows)
    print(f"over seeds {args.seeds}: full gap mean {r[:, 0].mean():.4f} max {r[:, 0].max():.4f}, ECE mean "
          f"{r[:, 1].mean():.4f} max {r[:, 1].max():.4f} | plan gap mean {r[:, 2].mean():.4f} max "
          f"{r[:, 2].max():.4f}, ECE max {r[:, 3].max():.4f}")


if __name__ == "__main__":
    main()
