"""Benchmark: ``/rank`` against the simulator's truth.

Simulates (or reuses) a dataset, trains a bundle with the training library
(``training.train.run_training``, default config) and fits the ranking model
(``models.ranking.fit_ranking_model``, on the data before the bundle's test window) into
it, then, for a sample of (deal, time) states of the test window (an activity's deal at
its ``occurred_at``, deal open):

1. builds the ``/rank`` request a CRM would send at that moment: the deal record (without
   ``closed_at`` / ``won``), the account, the deal's most recently touched contact, and as
   history the deal's activities, stages and outcomes before ``at``, the account's contacts
   and their activities of the last 90 days, the responses that had arrived by ``at``;
2. lets the service's ranking code (``serving.scorer.Scorer.rank``, in-process) propose and
   rank every candidate;
3. scores every candidate with the truth function in that state
   (``simulator.truth.true_outcome_probabilities`` on ``GroundTruth.state``).

It prints, in the same run, for three orderings of the same candidates: the ranking
model's ``rank_score`` (what ``/rank`` orders by when the bundle has a ranking model), the
plan model's ``p_outcome`` (what it orders by without one) and the baseline of the type's
average true rate (per type and automated flag, over the activities before the test
window): the mean true ``p_outcome`` of the top-1 and the top-5, the mean within-state
Spearman correlation with the truth and the share of states whose top-1 is within 10% of
the truth's best; and the mean true ``p_outcome`` of the truth's best candidate, of a random
candidate and of the rep's actual activity; then, per candidate kind, the models' mean
scores against the truth's, to show where they are off.

    .venv/bin/python benchmarks/bench_rank_truth.py [--activities 60000] [--seed 0] [--states 300]
                                                    [--work DIR] [--retrain]

``--work`` keeps the dataset and the bundle between runs (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from features import contract as c  # noqa: E402
from features.build import to_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HISTORY_CONTACT_DAYS = 90  # other deals' activities of the account's contacts sent as history
WITHIN = 0.10  # "top-1 within 10% of the truth's best"
TOP_K = 5


# --- data and model -------------------------------------------------------------------------


def ensure_dataset(directory: Path, activities: int, seed: int) -> Path:
    """Simulate ``activities`` activities with ``seed`` into ``directory`` unless it holds that dataset."""
    meta = directory / "ground_truth.json"
    if meta.exists():
        m = json.loads(meta.read_text(encoding="utf-8"))
        if m.get("seed") == seed and m.get("n_activities_requested", m.get("n_activities")) == activities:
            return directory
    from simulator.generate import simulate, write_simulation
    from simulator.params import SimulationConfig

    write_simulation(simulate(SimulationConfig(n_activities=activities, seed=seed)), directory)
    return directory


def train_bundle(data: Path, out: Path, overrides: dict[str, Any] | None = None, ranking: bool = True) -> Path:
    """Train with the training library (default config plus ``overrides``), save the bundle to ``out``.

    With ``ranking``, also fit the ranking model on the data before the bundle's test window
    and save it into the bundle.
    """
    from training.config import load_config
    from training.data import load_table
    from training.train import run_training

    cfg = load_config(None, **(overrides or {}))
    loaded = load_table(data, cfg)
    result = run_training(loaded, cfg)
    result.bundle.save(out)
    if ranking:
        add_ranking(loaded.dataset, out)
    return out


def add_ranking(dataset, bundle: Path, settings=None) -> Path:
    """Fit the ranking model for a saved bundle (rows before its test window) and save it into the bundle."""
    from models.bundle import ModelBundle
    from models.ranking import fit_ranking_model

    b = ModelBundle.load(bundle)
    model = fit_ranking_model(dataset, b.spec, until=b.manifest.data_window["test_start"], settings=settings,
                              timezone=b.manifest.timezone or "UTC")
    model.save(bundle)
    return bundle


# --- requests -------------------------------------------------------------------------------


from serving.batch_rank import RequestBuilder  # noqa: E402  (one request builder for the benchmarks and `rank`)
from simulator.truth import N_OPEN_STAGES  # noqa: E402


# --- evaluation -----------------------------------------------------------------------------


def candidate_key(activity: dict[str, Any]) -> str:
    """``type`` plus ``/auto`` for automated candidates: the kind of a candidate."""
    return f"{activity[c.TYPE]}{'/auto' if activity.get(c.IS_AUTOMATED) else ''}"


def type_average_rates(gt, before: pd.Timestamp) -> dict[str, float]:
    """Mean true ``p_outcome`` per candidate kind over the activities before ``before`` (open deals)."""
    acts = gt.dataset[c.ACTIVITIES][[c.ACTIVITY_ID, c.TYPE, c.IS_AUTOMATED, c.OCCURRED_AT]]
    truth = gt.activities[[c.ACTIVITY_ID, "p_outcome"]]
    m = acts.merge(truth, on=c.ACTIVITY_ID)
    m = m[(m[c.OCCURRED_AT] < before).to_numpy(bool)]
    keys = m[c.TYPE].astype(str) + np.where(m[c.IS_AUTOMATED].fillna(False).to_numpy(bool), "/auto", "")
    return m.groupby(keys.to_numpy())["p_outcome"].mean().to_dict()


RANKERS = {"ranking model": "rank_p", "plan p_outcome": "plan_p", "type average": "baseline_p"}


@dataclass
class StateResult:
    """One (deal, time) state: per candidate, the scores of each ranker and the truth's p_outcome."""

    activity_id: str
    kinds: list[str]
    rank_p: np.ndarray | None  # the ranking model's rank_score (None: the bundle has none)
    plan_p: np.ndarray  # the plan model's p_outcome
    truth_p: np.ndarray
    baseline_p: np.ndarray
    actual_p: float
    best_any_contact: float


@dataclass
class Summary:
    states: int
    rows: dict[str, dict[str, float]]  # ranker -> metric -> value
    best: float
    best_any_contact: float
    random: float
    actual: float
    kinds: pd.DataFrame
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def sample_states(gt, start: pd.Timestamp, n: int, seed: int) -> list[tuple[str, str, pd.Timestamp, str | None]]:
    """``n`` (activity, deal, occurred_at, contact) of open deals at or after ``start``, sampled with ``seed``."""
    acts = gt.dataset[c.ACTIVITIES]
    pool = acts[(acts[c.OCCURRED_AT] >= start).to_numpy(bool) & acts[c.DEAL_ID].notna().to_numpy(bool)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    out = []
    for i in order:
        row = pool.iloc[int(i)]
        deal, at = str(row[c.DEAL_ID]), row[c.OCCURRED_AT]
        try:
            if not gt.state(deal, at).is_open:
                continue
        except ValueError:
            continue
        out.append((str(row[c.ACTIVITY_ID]), deal, at, None if pd.isna(row[c.CONTACT_ID]) else str(row[c.CONTACT_ID])))
        if len(out) == n:
            break
    return out


def sample_states_by_stage(gt, start: pd.Timestamp, per_stage: int,
                           seed: int) -> list[tuple[str, str, pd.Timestamp, str | None, int]]:
    """``per_stage`` states of open deals at or after ``start`` in every open stage, sampled with ``seed``.

    Like :func:`sample_states` plus the state's stage, but stratified: late stages are rare in a
    random sample (deals spend most of their activities early), so a random sample says little
    about them. A stage with fewer states than ``per_stage`` gives what it has.
    """
    acts = gt.dataset[c.ACTIVITIES]
    pool = acts[(acts[c.OCCURRED_AT] >= start).to_numpy(bool) & acts[c.DEAL_ID].notna().to_numpy(bool)]
    got: dict[int, int] = {}
    out = []
    for i in np.random.default_rng(seed).permutation(len(pool)):
        row = pool.iloc[int(i)]
        deal, at = str(row[c.DEAL_ID]), row[c.OCCURRED_AT]
        try:
            state = gt.state(deal, at)
        except ValueError:
            continue
        if not state.is_open or got.get(state.stage_order, 0) >= per_stage:
            continue
        got[state.stage_order] = got.get(state.stage_order, 0) + 1
        out.append((str(row[c.ACTIVITY_ID]), deal, at, None if pd.isna(row[c.CONTACT_ID]) else str(row[c.CONTACT_ID]),
                    state.stage_order))
        if len(got) == N_OPEN_STAGES and min(got.values()) >= per_stage:
            break
    return out


def _truth_candidates(gt, activities: list[dict[str, Any]]):
    out = []
    for a in activities:
        out.append(gt.candidate(
            a[c.TYPE], a.get(c.CONTACT_ID),
            personalization=a.get(c.PERSONALIZATION),
            is_automated=bool(a.get(c.IS_AUTOMATED, False)),
            direction=a.get(c.DIRECTION) or "outbound",
        ))
    return out


def evaluate_states(scorer, gt, states, rates: dict[str, float]) -> list[StateResult]:
    """Rank every state with the scorer and score every candidate with the truth."""
    from serving.candidates import variants
    from serving.schemas import RankRequest
    from simulator.truth import true_outcome_probabilities

    builder = RequestBuilder(gt.dataset)
    truth_rows = gt.activities.set_index(c.ACTIVITY_ID)["p_outcome"]
    all_variants = variants(scorer.spec)
    results = []
    for activity_id, deal_id, at, contact_id in states:
        body = builder.body(deal_id, at, contact_id)
        response = scorer.rank(RankRequest.model_validate_json(json.dumps(body)))
        acts = [r.activity for r in response.ranked]
        plan_p = np.array([r.p_outcome for r in response.ranked], dtype=float)
        rank_p = None if scorer.ranking is None else np.array([r.rank_score for r in response.ranked], dtype=float)
        state = gt.state(deal_id, at)
        truth_p = true_outcome_probabilities(state, _truth_candidates(gt, acts), gt.params)
        kinds = [candidate_key(a) for a in acts]
        baseline_p = np.array([rates.get(k, 0.0) for k in kinds])
        every = [{**v, c.CONTACT_ID: cid} for v in all_variants for cid in builder.account_contacts(deal_id)]
        best_any = 0.0
        if every:
            best_any = float(true_outcome_probabilities(state, _truth_candidates(gt, every), gt.params).max())
        results.append(StateResult(activity_id, kinds, rank_p, plan_p, truth_p, baseline_p,
                                   float(truth_rows.loc[activity_id]), max(best_any, float(truth_p.max()))))
    return results


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return np.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _order(scores: np.ndarray) -> np.ndarray:
    """Best first; ties keep the service's candidate order (stable)."""
    return np.argsort(-scores, kind="stable")


def summarize(results: list[StateResult]) -> Summary:
    """Figures over the states (means of per-state values)."""
    rows: dict[str, dict[str, float]] = {}
    for name, attr in RANKERS.items():
        if getattr(results[0], attr) is None:
            continue
        top1, top5, rho, within = [], [], [], []
        for r in results:
            scores = getattr(r, attr)
            o = _order(scores)
            top1.append(r.truth_p[o[0]])
            top5.append(r.truth_p[o[:TOP_K]].mean())
            rho.append(_spearman(scores, r.truth_p))
            within.append(r.truth_p[o[0]] >= (1 - WITHIN) * r.truth_p.max())
        rows[name] = {"top1": float(np.mean(top1)), "top5": float(np.mean(top5)),
                      "spearman": float(np.nanmean(rho)), "within10": float(np.mean(within))}
    kinds: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    has_rank = results[0].rank_p is not None
    for r in results:
        best = int(np.argmax(r.truth_p))
        for i, k in enumerate(r.kinds):
            kinds[k]["plan"].append(r.plan_p[i])
            kinds[k]["truth"].append(r.truth_p[i])
            if has_rank:
                kinds[k]["rank"].append(r.rank_p[i])
        kinds[r.kinds[_order(r.plan_p)[0]]]["plan_top1"].append(1)
        if has_rank:
            kinds[r.kinds[_order(r.rank_p)[0]]]["rank_top1"].append(1)
        kinds[r.kinds[best]]["truth_best"].append(1)
    table = pd.DataFrame({
        k: {"true p": np.mean(v["truth"]),
            "p_outcome": np.mean(v["plan"]),
            **({"rank_score": np.mean(v["rank"])} if has_rank else {}),
            "truth best": len(v["truth_best"]) / len(results),
            "p_outcome top-1": len(v["plan_top1"]) / len(results),
            **({"rank_score top-1": len(v["rank_top1"]) / len(results)} if has_rank else {})}
        for k, v in kinds.items()
    }).T.sort_values("true p", ascending=False)
    return Summary(
        states=len(results), rows=rows,
        best=float(np.mean([r.truth_p.max() for r in results])),
        best_any_contact=float(np.mean([r.best_any_contact for r in results])),
        random=float(np.mean([r.truth_p.mean() for r in results])),
        actual=float(np.mean([r.actual_p for r in results])),
        kinds=table,
    )


def report(summary: Summary) -> str:
    lines = [
        f"{summary.states} states; mean true p_outcome of",
        f"  the truth's best candidate   {summary.best:.4f}   (best over every contact of the account: "
        f"{summary.best_any_contact:.4f})",
        f"  a random candidate           {summary.random:.4f}",
        f"  the rep's actual activity    {summary.actual:.4f}",
        f"{'ordered by':<16} {'top-1':>7} {'top-5':>7} {'Spearman':>9} {'top-1 within 10%':>17}",
    ]
    for name, m in summary.rows.items():
        lines.append(f"{name:<16} {m['top1']:7.4f} {m['top5']:7.4f} {m['spearman']:9.3f} {m['within10']:17.1%}")
    lines += ["per candidate kind (mean scores over states; shares of states):",
              summary.kinds.to_string(float_format=lambda x: f"{x:.4f}")]
    return "\n".join(lines)


def run(data: Path, bundle: Path, states: int, seed: int) -> Summary:
    """Evaluate the bundle's ranking on ``states`` sampled states of the bundle's test window."""
    from serving.model_store import load_bundle_dir
    from serving.scorer import Scorer
    from simulator.ground_truth import GroundTruth

    t = time.perf_counter()
    model = load_bundle_dir(bundle)
    scorer = Scorer(model, max_rank_contacts=5, max_candidates=60)
    gt = GroundTruth.load(data)
    start = pd.Timestamp(model.bundle.manifest.data_window["test_start"])
    sampled = sample_states(gt, start, states, seed)
    results = evaluate_states(scorer, gt, sampled, type_average_rates(gt, start))
    summary = summarize(results)
    summary.seconds = time.perf_counter() - t
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (the demo's is 0)")
    parser.add_argument("--states", type=int, default=300)
    parser.add_argument("--state-seed", type=int, default=1)
    parser.add_argument("--work", type=Path, help="keep (and reuse) the dataset and the bundle here")
    parser.add_argument("--retrain", action="store_true", help="train again even if --work holds a bundle")
    parser.add_argument("--no-ranking", action="store_true",
                        help="evaluate the bundle without a ranking model (orders by the plan p_outcome only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-rank-truth-"))
    data = ensure_dataset(work / f"sim-{args.activities}-s{args.seed}", args.activities, args.seed)
    bundle = work / f"bundle-{args.activities}-s{args.seed}"
    if args.retrain or not (bundle / "manifest.json").exists():
        t = time.perf_counter()
        print(f"training on {data} ...", flush=True)
        train_bundle(data, bundle, ranking=False)
        print(f"  trained in {time.perf_counter() - t:.0f}s", flush=True)
    has_ranking = (bundle / "ranking").exists()
    if args.no_ranking and has_ranking:
        import shutil

        shutil.rmtree(bundle / "ranking")
    elif not args.no_ranking and (args.retrain or not has_ranking):
        from features.dataset import load_dataset

        t = time.perf_counter()
        add_ranking(load_dataset(data), bundle)
        print(f"  ranking model fitted in {time.perf_counter() - t:.0f}s", flush=True)
    summary = run(data, bundle, args.states, args.state_seed)
    print(report(summary))
    print(f"({summary.seconds:.0f}s; dataset {data}, bundle {bundle})")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
