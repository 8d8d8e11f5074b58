"""Benchmark: how much of ``/rank``'s shortfall is credit assignment, and how much is data.

For one simulated world (the layout of ``bench_rank_worlds.py --work``: ``<work>/<world>/data-N-sS``
and ``bundle-N-sS``, simulated and trained here when missing), the effect model is fitted three
ways on the same history, with the same settings, and each is ranked on the same held-out states
with the same truth as ``bench_rank_worlds.py`` (all three refitted here with the current code
and the config's ``effects`` settings, without bootstrap refits):

- ``attributed``: the EM attributes each recorded advance to the activities before it: what
  ``train`` ships and ``/rank`` does;
- ``known``: q fitted on the simulator's record of which activity triggered an advance
  (``triggered_advance``): perfect credit assignment, with the noise of real 0/1 outcomes. The
  gap between this row and ``attributed`` is what attribution loses; the gap between this row
  and 100% is what the amount of data (and the model) loses;
- ``truth p``: q fitted on each activity's true probability (no outcome noise at all): what the
  features and the model could do with unlimited data.

    .venv/bin/python benchmarks/bench_effect_ceiling.py --world unseen --activities 200000 \\
        [--states 300] [--work DIR] [--config FILE] [--labels attributed known truth]

``loglik`` is each fit's log-likelihood per recorded advance on the deals held out of its final
fit (``heldout_loglik_per_advance`` in ``effects.json``): the criterion a team without a truth can
read on its own history; it should be highest where the order is best.

Nothing here is a target: it prints figures to decide where work on the estimator pays.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import pandas as pd  # noqa: E402

import bench_rank_worlds as worlds  # noqa: E402
from bench_rank_truth import sample_states, type_average_rates  # noqa: E402

logger = logging.getLogger("bench_effect_ceiling")
LABELS = {"attributed": None, "known": "triggered_advance", "truth": "p_outcome"}


def refit(data: Path, bundle: Path, out: Path, column: str | None, cut: pd.Timestamp,
          config: Path | None = None) -> tuple[float, float | None]:
    """Copy ``bundle`` to ``out`` with its effect model refitted: on the ground truth's ``column``, or attributed (None).

    Returns the seconds it took and the held-out deals' log-likelihood per advance (no truth needed).
    """
    from serving.model_store import load_bundle_dir
    from training.config import load_config
    from training.data import load_table
    from training.effects import fit_effect_model

    t = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle, out)
    meta = json.loads((bundle / "effects" / "effects.json").read_text(encoding="utf-8"))
    until = pd.Timestamp(meta["metrics"]["until"])
    cfg = load_config(config)
    loaded = load_table(data, cfg, cut)
    labels = None
    if column is not None:
        truth = pd.read_parquet(data / "ground_truth.parquet", columns=["activity_id", column])
        labels = truth.set_index("activity_id")[column].astype("float64")
    spec = load_bundle_dir(bundle).bundle.spec
    model = fit_effect_model(loaded.dataset, loaded.table.frame, spec, until=until,
                             horizon_days=cfg.horizons.outcome_days,
                             settings=replace(cfg.effects, n_bootstrap=0), known_labels=labels,
                             threads=cfg.lightgbm.num_threads)
    shutil.rmtree(out / "effects")
    model.save(out)
    return time.perf_counter() - t, model.metrics.get("heldout_loglik_per_advance")


def rank(data: Path, bundle: Path, states_n: int, state_seed: int, cut: pd.Timestamp) -> dict[str, float]:
    """Gap closed and Spearman of the effect order (and of /rank's) on held-out states."""
    from serving.model_store import load_bundle_dir
    from serving.schemas import get_limits, set_limits
    from serving.scorer import Scorer
    from simulator.ground_truth import GroundTruth

    set_limits(replace(get_limits(), max_candidates=worlds.MAX_CANDIDATES, max_history_rows=worlds.MAX_HISTORY_ROWS))
    gt = GroundTruth.load(data)
    states = sample_states(gt, cut, states_n, state_seed)
    results, ranked_by = worlds.evaluate(Scorer(load_bundle_dir(bundle)), gt, states, type_average_rates(gt, cut),
                                         worlds.observed_kind_rates(gt, cut))
    summary = worlds.summarize("x", results, ranked_by)
    out = {"rank_gap": summary.rows["/rank"]["gap_closed"], "rank_spearman": summary.rows["/rank"]["spearman"]}
    if "effect" in summary.rows:
        out |= {"effect_gap": summary.rows["effect"]["gap_closed"], "effect_spearman": summary.rows["effect"]["spearman"]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True, help="a shipped world's name or a world file")
    parser.add_argument("--activities", type=int, default=worlds.DEFAULT_ACTIVITIES)
    parser.add_argument("--states", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state-seed", type=int, default=1)
    parser.add_argument("--cut", type=float, default=worlds.DEFAULT_CUT)
    parser.add_argument("--work", type=Path, help="bench_rank_worlds.py's --work directory (reused)")
    parser.add_argument("--config", type=Path, help="training config (YAML), as bench_rank_worlds.py's --config")
    parser.add_argument("--labels", nargs="+", choices=sorted(LABELS), default=list(LABELS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from simulator.worlds import load_world

    world = load_world(args.world).name
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-effect-ceiling-"))
    directory = work / world
    data = directory / f"data-{args.activities}-s{args.seed}"
    bundle = directory / f"bundle-{args.activities}-s{args.seed}{'-' + args.config.stem if args.config else ''}"
    worlds.ensure_world_dataset(data, world, args.activities, args.seed)
    cut = worlds.history_cut(data, args.cut)
    if not (bundle / "manifest.json").exists():
        print(f"[{world}] training before {cut.date()} ...", flush=True)
        worlds.train_world(data, bundle, cut, args.config)
    print(f"world {world}: {args.activities:,} activities, {args.states} held-out states")
    print(f"  {'labels':<12} {'/rank gap':>9} {'rho':>6} {'effect gap':>11} {'rho':>6} {'fit s':>6} {'loglik':>8}")
    for name in args.labels:
        target = directory / f"ceiling-{name}-{args.activities}-s{args.seed}"
        seconds, loglik = refit(data, bundle, target, LABELS[name], cut, args.config)
        m = rank(data, target, args.states, args.state_seed, cut)
        print(f"  {name:<12} {m['rank_gap']:9.0%} {m['rank_spearman']:6.2f} {m.get('effect_gap', float('nan')):11.0%} "
              f"{m.get('effect_spearman', float('nan')):6.2f} {seconds:6.0f} "
              f"{float('nan') if loglik is None else loglik:8.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
