"""Benchmark: ``/rank`` against the truth in every simulated world, with one default configuration.

For every world (``simulator/worlds_data/*.yaml``, or ``--worlds a b``):

1. simulates ``--activities`` activities of the world (``simulator.worlds.simulate_world``);
2. trains with the project's default configuration through the ``train`` command's code path
   (``training.workflow.train_and_register``, no MLflow registration) on the history before a
   cut at ``--cut`` of the history (75% by default): the same settings in every world;
3. samples ``--states`` held-out states after the cut (an activity's deal at its
   ``occurred_at``, deal open) and builds the ``/rank`` request a CRM would send then
   (``bench_rank_truth.RequestBuilder``), with explicit candidates: every contact of the
   account x every activity type tailored (``serving.candidates.TAILORED``), x automated for
   the types sequences can send (email, inmail, social: ``serving.candidates.AUTOMATED``),
   plus ``none`` (a deliberate wait);
4. ranks in-process with ``serving.scorer.Scorer.rank`` and scores every candidate with the
   world's truth (``GroundTruth.state`` + ``simulator.truth.true_outcome_probabilities``).

Per world it reports the mean true ``p_outcome`` of the top-1 of each ordering: ``/rank``
(the order the service returns; its ``ranked_by`` is named), ``effect`` (the effect model's
``effect``, when the bundle has one), ``ranking model`` (``rank_score``), ``plan p_outcome``,
``type average`` (each kind's mean true ``p_outcome`` over the activities before the cut,
type x automated: the baseline of ``bench_rank_truth``, confounded by who got which kind),
``observed rate`` (each kind's observed outcome-label rate before the cut: what a user could
compute from the history), the rep's actual activity, a random candidate and the best;
the share of the best-minus-random gap each closes, the mean within-state Spearman
correlation with the truth, the share of states whose top-1 is automated and the share whose
truth's best is automated. Targets, applied to the ``/rank`` ordering in every world: gap
closed >= 75%, Spearman >= 0.7, top-1 not below the type-average baseline. Exit 1 when any
fails.

    .venv/bin/python benchmarks/bench_rank_worlds.py [--worlds unseen same_day] [--activities 100000]
        [--states 500] [--seed 0] [--work DIR] [--retrain] [--json FILE]

``--work`` keeps each world's dataset and bundle between runs (default: a temporary
directory); ``--retrain`` trains again even when a bundle is there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench_rank_truth import (  # noqa: E402
    RequestBuilder,
    _spearman,
    _truth_candidates,
    sample_states,
    type_average_rates,
)
from features import contract as c  # noqa: E402

logger = logging.getLogger("bench_rank_worlds")

TARGET_GAP = 0.75
TARGET_SPEARMAN = 0.70
DEFAULT_ACTIVITIES = 100_000
DEFAULT_STATES = 500
DEFAULT_CUT = 0.75
MAX_CANDIDATES = 1000  # the request limit for this benchmark (every contact x every kind)
MAX_HISTORY_ROWS = 100_000  # a heavily worked deal's history exceeds the service's default limit


# --- data and model -------------------------------------------------------------------------


def ensure_world_dataset(directory: Path, world: str, activities: int, seed: int) -> bool:
    """Simulate ``world`` into ``directory`` unless it already holds that dataset; True when it simulated."""
    meta_path = directory / "ground_truth.json"
    if meta_path.exists():
        m = json.loads(meta_path.read_text(encoding="utf-8"))
        if (m.get("seed") == seed and m.get("n_activities_requested") == activities
                and (m.get("world") or {}).get("name") == world):
            return False
    from simulator.generate import write_simulation
    from simulator.worlds import load_world, simulate_world

    write_simulation(simulate_world(load_world(world), activities, seed, oracle=None), directory)
    return True


def history_cut(data: Path, share: float) -> pd.Timestamp:
    """The instant ``share`` of the way through the history (a midnight, UTC)."""
    m = json.loads((data / "ground_truth.json").read_text(encoding="utf-8"))
    start, end = pd.Timestamp(m["start"], tz="UTC"), pd.Timestamp(m["end"], tz="UTC")
    return (start + (end - start) * share).normalize()


def train_world(data: Path, bundle: Path, until: pd.Timestamp, config: Path | None = None) -> float:
    """Train with the default configuration (the ``train`` command's code path) before ``until``."""
    from training.config import load_config
    from training.workflow import train_and_register

    t = time.perf_counter()
    train_and_register(data, load_config(config), until=until, register=False, bundle_out=bundle)
    return time.perf_counter() - t


# --- states and candidates ------------------------------------------------------------------


def all_candidates(contacts: list[str]) -> list[dict[str, Any]]:
    """Every contact x every type tailored, x automated for the automatable types, plus ``none``."""
    from serving.candidates import AUTOMATABLE_TYPES, AUTOMATED, TAILORED

    out: list[dict[str, Any]] = []
    for cid in contacts:
        for t in c.ACTIVITY_TYPES:
            if t == "none":
                continue
            out.append({c.TYPE: t, c.CONTACT_ID: cid, **TAILORED})
            if t in AUTOMATABLE_TYPES:
                out.append({c.TYPE: t, c.CONTACT_ID: cid, **AUTOMATED})
    out.append({c.TYPE: "none", c.IS_AUTOMATED: False})
    return out


def kind(activity: dict[str, Any]) -> str:
    """``type`` plus ``/auto`` for an automated activity."""
    return f"{activity[c.TYPE]}{'/auto' if activity.get(c.IS_AUTOMATED) else ''}"


def observed_kind_rates(gt, cut: pd.Timestamp) -> dict[str, float]:
    """Each kind's observed outcome rate (the contract label) over the labelled activities before ``cut``.

    The naive baseline a user could compute from the history (``bench_rank_truth`` averages the
    true probabilities instead, which only a simulator knows).
    """
    acts = gt.dataset[c.ACTIVITIES][[c.ACTIVITY_ID, c.TYPE, c.IS_AUTOMATED, c.OCCURRED_AT]]
    m = acts.merge(gt.activities[[c.ACTIVITY_ID, "label_outcome"]], on=c.ACTIVITY_ID)
    m = m[(m[c.OCCURRED_AT] < cut).to_numpy(bool) & m["label_outcome"].notna().to_numpy(bool)]
    keys = m[c.TYPE].astype(str) + np.where(m[c.IS_AUTOMATED].fillna(False).to_numpy(bool), "/auto", "")
    return m.groupby(keys.to_numpy())["label_outcome"].mean().to_dict()


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class State:
    """One held-out state: every candidate's scores per ordering and its true probability."""

    kinds: list[str]
    automated: np.ndarray
    truth: np.ndarray
    scores: dict[str, np.ndarray]  # ordering -> score (higher first); "/rank" is the response order
    actual: float


@dataclass
class WorldResult:
    world: str
    states: int
    ranked_by: str
    rows: dict[str, dict[str, float]]
    best: float
    random: float
    actual: float
    truth_best_automated: float
    targets: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def evaluate(scorer, gt, states, rates: dict[str, float], observed: dict[str, float]) -> tuple[list[State], str]:
    """Rank every state with explicit candidates and score them with the truth."""
    from serving.schemas import RankRequest
    from simulator.truth import true_outcome_probabilities

    builder = RequestBuilder(gt.dataset)
    actual_p = gt.activities.set_index(c.ACTIVITY_ID)["p_outcome"]
    out, ranked_by = [], "?"
    for activity_id, deal_id, at, contact_id in states:
        body = builder.body(deal_id, at, contact_id)
        body["candidates"] = all_candidates(builder.account_contacts(deal_id))
        body["top_k"] = len(body["candidates"])
        response = scorer.rank(RankRequest.model_validate_json(json.dumps(body, default=str)))
        ranked_by = response.ranked_by
        ranked = response.ranked
        acts = [r.activity for r in ranked]
        n = len(acts)
        scores = {"/rank": -np.arange(n, dtype=float)}  # the service's order, best first
        effect = [getattr(r, "effect", None) for r in ranked]
        if all(e is not None for e in effect):
            scores["effect"] = np.array(effect, dtype=float)
        if all(r.rank_score is not None for r in ranked):
            scores["ranking model"] = np.array([r.rank_score for r in ranked], dtype=float)
        scores["plan p_outcome"] = np.array([r.p_outcome for r in ranked], dtype=float)
        kinds = [kind(a) for a in acts]
        scores["type average"] = np.array([rates.get(k, 0.0) for k in kinds])
        scores["observed rate"] = np.array([observed.get(k, 0.0) for k in kinds])
        truth = true_outcome_probabilities(gt.state(deal_id, at), _truth_candidates(gt, acts), gt.params)
        out.append(State(kinds, np.array([bool(a.get(c.IS_AUTOMATED)) for a in acts]), truth, scores,
                         float(actual_p.loc[activity_id])))
    return out, ranked_by


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")  # ties keep the service's order


def summarize(world: str, states: list[State], ranked_by: str) -> WorldResult:
    """Per ordering: top-1 true p, gap closed, Spearman, automated top-1 share; then the targets."""
    best = float(np.mean([s.truth.max() for s in states]))
    random = float(np.mean([s.truth.mean() for s in states]))
    gap = best - random

    def closed(value: float) -> float:
        return (value - random) / gap if gap > 0 else float("nan")

    rows: dict[str, dict[str, float]] = {}
    for name in states[0].scores:
        top1, rho, auto = [], [], []
        for s in states:
            o = _order(s.scores[name])
            top1.append(s.truth[o[0]])
            auto.append(s.automated[o[0]])
            rho.append(_spearman(s.scores[name], s.truth))
        t1 = float(np.mean(top1))
        rows[name] = {"top1": t1, "gap_closed": closed(t1), "spearman": float(np.nanmean(rho)),
                      "automated_top1": float(np.mean(auto))}
        if name in ("/rank", "effect"):
            rows[name] |= _state_intervals(states, np.array(top1), np.array(rho))
    actual = float(np.mean([s.actual for s in states]))
    rows["actual choice"] = {"top1": actual, "gap_closed": closed(actual)}
    rows["random"] = {"top1": random, "gap_closed": 0.0}
    rows["best"] = {"top1": best, "gap_closed": 1.0,
                    "automated_top1": float(np.mean([s.automated[int(np.argmax(s.truth))] for s in states]))}
    served = rows["/rank"]
    targets = {
        f"gap closed >= {TARGET_GAP:.0%}": served["gap_closed"] >= TARGET_GAP,
        f"Spearman >= {TARGET_SPEARMAN}": served["spearman"] >= TARGET_SPEARMAN,
        "top-1 >= type average": served["top1"] >= rows["type average"]["top1"],
    }
    return WorldResult(world, len(states), ranked_by, rows, best, random, actual,
                       rows["best"]["automated_top1"], targets)


def _state_intervals(states: list[State], top1: np.ndarray, rho: np.ndarray, reps: int = 2000,
                     seed: int = 0) -> dict[str, tuple[float, float]]:
    """90% intervals of the gap closed and of Spearman over resamples of the held-out states.

    What the sample of states alone leaves uncertain (not the training history's randomness): a
    figure whose interval straddles a target is not a clear miss or a clear pass.
    """
    rng = np.random.default_rng(seed)
    best = np.array([s.truth.max() for s in states])
    random = np.array([s.truth.mean() for s in states])
    idx = rng.integers(0, len(states), size=(reps, len(states)))
    b, r, t = best[idx].mean(axis=1), random[idx].mean(axis=1), top1[idx].mean(axis=1)
    gap = np.where(b > r, (t - r) / np.where(b > r, b - r, 1.0), np.nan)
    rhos = np.nanmean(rho[idx], axis=1)
    return {"gap_closed_90": (float(np.nanquantile(gap, 0.05)), float(np.nanquantile(gap, 0.95))),
            "spearman_90": (float(np.nanquantile(rhos, 0.05)), float(np.nanquantile(rhos, 0.95)))}


def run_world(world: str, args, work: Path) -> WorldResult:
    from serving.model_store import load_bundle_dir
    from serving.schemas import get_limits, set_limits
    from serving.scorer import Scorer
    from simulator.ground_truth import GroundTruth

    seconds: dict[str, float] = {}
    directory = work / world
    data = directory / f"data-{args.activities}-s{args.seed}"
    bundle = directory / f"bundle-{args.activities}-s{args.seed}{'-' + args.config.stem if args.config else ''}"
    t = time.perf_counter()
    fresh = ensure_world_dataset(data, world, args.activities, args.seed)
    seconds["simulate"] = time.perf_counter() - t
    cut = history_cut(data, args.cut)
    if fresh or args.retrain or not (bundle / "manifest.json").exists():
        print(f"[{world}] training before {cut.date()} on {data} ...", flush=True)
        seconds["train"] = train_world(data, bundle, cut, args.config)
    t = time.perf_counter()
    set_limits(replace(get_limits(), max_candidates=MAX_CANDIDATES, max_history_rows=MAX_HISTORY_ROWS))
    scorer = Scorer(load_bundle_dir(bundle))
    gt = GroundTruth.load(data)
    states = sample_states(gt, cut, args.states, args.state_seed)
    if len(states) < args.states:
        logger.warning("%s: only %d open states after %s", world, len(states), cut)
    results, ranked_by = evaluate(scorer, gt, states, type_average_rates(gt, cut), observed_kind_rates(gt, cut))
    seconds["rank"] = time.perf_counter() - t
    out = summarize(world, results, ranked_by)
    out.seconds = seconds
    return out


# --- report ---------------------------------------------------------------------------------


def report(r: WorldResult) -> str:
    lines = [f"world {r.world}: {r.states} held-out states, /rank ranked_by {r.ranked_by!r}; "
             f"truth's best automated in {r.truth_best_automated:.0%} of states",
             f"  {'ordering':<16} {'top-1 p':>8} {'gap closed':>11} {'Spearman':>9} {'automated top-1':>16}"]
    for name, m in r.rows.items():
        label = f"/rank ({r.ranked_by})" if name == "/rank" else name
        rho = f"{m['spearman']:9.3f}" if "spearman" in m else " " * 9
        auto = f"{m['automated_top1']:16.0%}" if "automated_top1" in m else " " * 16
        ci = ""
        if "gap_closed_90" in m:
            (g0, g1), (r0, r1) = m["gap_closed_90"], m["spearman_90"]
            ci = f"   90% over states: gap {g0:.0%}-{g1:.0%}, Spearman {r0:.2f}-{r1:.2f}"
        lines.append(f"  {label:<16} {m['top1']:8.4f} {m['gap_closed']:11.0%} {rho} {auto}{ci}")
    lines.append("  targets (/rank): " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in r.targets.items())
                 + "   (" + ", ".join(f"{k} {v:.0f}s" for k, v in r.seconds.items()) + ")")
    return "\n".join(lines)


def _span(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"{interval[0]:.0%}-{interval[1]:.0%}"


def summary_table(results: list[WorldResult]) -> str:
    head = (f"{'world':<24} {'ranked_by':<10} {'best':>6} {'random':>6} {'/rank':>6} {'gap':>6} {'rho':>6} "
            f"{'gap 90%':>9} {'type avg':>8} {'observed':>8} {'rank model gap':>14} {'auto top-1':>10} "
            f"{'truth auto':>10}  targets")
    lines = [head]
    for r in results:
        s = r.rows["/rank"]
        rm = r.rows.get("ranking model", {}).get("gap_closed", float("nan"))
        lines.append(f"{r.world:<24} {r.ranked_by:<10} {r.best:6.3f} {r.random:6.3f} {s['top1']:6.3f} "
                     f"{s['gap_closed']:6.0%} {s['spearman']:6.2f} {_span(s.get('gap_closed_90')):>9} "
                     f"{r.rows['type average']['top1']:8.3f} "
                     f"{r.rows['observed rate']['top1']:8.3f} "
                     f"{rm:14.0%} {s['automated_top1']:10.0%} {r.truth_best_automated:10.0%}  "
                     f"{'met' if all(r.targets.values()) else 'FAILED'}")
    return "\n".join(lines)


def main() -> int:
    from simulator.worlds import load_world, world_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", help="world names or world files (default: every shipped world)")
    parser.add_argument("--activities", type=int, default=DEFAULT_ACTIVITIES)
    parser.add_argument("--states", type=int, default=DEFAULT_STATES)
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--state-seed", type=int, default=1, help="seed of the state sample")
    parser.add_argument("--cut", type=float, default=DEFAULT_CUT, help="train before this share of the history")
    parser.add_argument("--work", type=Path, help="keep (and reuse) each world's dataset and bundle here")
    parser.add_argument("--retrain", action="store_true", help="train again even if --work holds a bundle")
    parser.add_argument("--config", type=Path, help="training config (YAML); default: the embedded defaults. "
                        "The targets hold only for one configuration used in every world")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    worlds = args.worlds or world_names()
    for w in worlds:
        load_world(w)  # a bad name or file fails before any work
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-rank-worlds-"))
    results, errors = [], {}
    for w in worlds:
        try:
            r = run_world(w, args, work)
        except Exception as err:  # one world's failure is reported, the others still run
            logger.exception("world %s failed", w)
            errors[w] = f"{type(err).__name__}: {err}"
            continue
        print(report(r), flush=True)
        results.append(r)
        if args.json:  # after every world: a long run that stops keeps what it measured
            write_json(args, results, errors)
    print()
    print(summary_table(results))
    failed = [r.world for r in results if not all(r.targets.values())] + list(errors)
    print(f"targets (gap closed >= {TARGET_GAP:.0%}, Spearman >= {TARGET_SPEARMAN}, top-1 >= type average, "
          f"same settings in every world): " + (f"FAILED in {', '.join(failed)}" if failed else "met in every world"))
    if errors:
        print("errors: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    if args.json:
        write_json(args, results, errors)
    return 1 if failed else 0


def write_json(args, results: list[WorldResult], errors: dict[str, str]) -> None:
    """The figures of every world measured so far (and the errors) as JSON in ``args.json``."""
    args.json.write_text(json.dumps({
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "worlds": [{"world": r.world, "states": r.states, "ranked_by": r.ranked_by, "best": r.best,
                    "random": r.random, "actual": r.actual, "truth_best_automated": r.truth_best_automated,
                    "orderings": r.rows, "targets": r.targets, "seconds": r.seconds} for r in results],
        "errors": errors,
    }, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
