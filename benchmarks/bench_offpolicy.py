"""Benchmark: off-policy evaluation over the ``/rank`` prediction log against a simulated world's truth.

What ``activity-scorer evaluate-policy`` promises, checked where the answer is known:

1. simulates a small world (``--world``: ``tiny``, the closed-form ``simulator.worlds.tiny_world``,
   or a shipped world by name) and trains once before a cut at ``--cut`` of the history
   through the ``train`` command's code path (``training.workflow.train_and_register``, the
   default configuration, no registration), as ``bench_rank_worlds.py`` does;
2. samples ``--states`` held-out (deal, time) states after the cut and sends each the
   ``/rank`` request ``activity-scorer rank`` builds (``serving.batch_rank.RequestBuilder``) with
   ``--candidates`` candidates drawn from every contact of the account x every type x
   tailored/automated, plus ``none``; ``serving.scorer.Scorer.rank`` answers with exploration
   rate ``--exploration`` and its answers go through the real logging path
   (``serving.prediction_log.rank_record`` into a ``PredictionLog`` directory);
3. reads the log back with ``reports.offpolicy.read_rank_log`` and draws each state's reward
   from the world's TRUE probability of the candidate shown first (``GroundTruth.state`` +
   ``simulator.truth.true_outcome_probabilities``);
4. evaluates two other rankers off-policy with the command's estimator
   (``reports.offpolicy.evaluate_log``, rewards passed in instead of read from the dataset): a
   ``random`` ranker (seeded), ``plan p_outcome`` (the logged ``p_outcome``: how ``/rank``
   ordered before effects) and the logging ranker without exploration (its own pick, the
   candidate logged with the highest propensity), and compares each with its true value (the
   mean true probability of its first choice over the same supported states);
5. re-ranks ``--replay-states`` of the logged states with the same bundle without exploration,
   each state rebuilt from the dataset at its time (``reports.offpolicy.top1_by_scorer``: the
   command's ``--bundle`` route), which must pick the candidate the logging ranker preferred
   (the one logged with the highest propensity) in every state.

With ``--replications R`` the first entry of every state is drawn again R-1 times from its
logged propensities (as the policy draws it; the first replication is the real logged one) with
new rewards, and the share of the claimed intervals that hold the true value is printed per
ranker: a 90% interval should hold it about 90% of the time.

Targets (exit 1 when one fails): the true value of the ``random`` ranker lies inside its IPS
90% interval in the logged replication; the claimed intervals of every ranker with at least
20 claims hold the truth in at least 80% of the replications; the dataset route reproduces the
logging ranker's pick in every state re-ranked.

    .venv/bin/python benchmarks/bench_offpolicy.py [--world tiny] [--activities 40000] [--states 3000]
        [--candidates 3] [--exploration 0.3] [--replications 200] [--seed 0] [--work DIR]

``--work`` keeps the dataset and the bundle between runs (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402

GATE = "random"
MIN_COVERAGE = 0.80  # of claimed nominal-90% intervals over the replications (nominal 90%; 200 draws: sd ~2%)
MIN_CLAIMS = 20
MAX_HISTORY_ROWS = 100_000


def ensure_dataset(directory: Path, world: str, activities: int, seed: int) -> bool:
    """Simulate ``world`` (``tiny`` or a shipped name) into ``directory`` unless it is there; True when simulated."""
    meta_path = directory / "ground_truth.json"
    if meta_path.exists():
        m = json.loads(meta_path.read_text(encoding="utf-8"))
        if m.get("seed") == seed and m.get("n_activities_requested") == activities \
                and (m.get("world") or {}).get("name") == world:
            return False
    from simulator.generate import write_simulation
    from simulator.worlds import load_world, simulate_world, tiny_world

    w = tiny_world() if world == "tiny" else load_world(world)
    sim = simulate_world(w, activities, seed, oracle=None)
    sim.meta["world"] = dict(sim.meta.get("world") or {}, name=world)
    write_simulation(sim, directory)
    return True


def seeded_exploration(seed: int) -> None:
    """Make ``/rank``'s exploration draws reproducible: ``serving.rank_policy`` draws from ``random.Random()``.

    The scorer takes no generator, so the benchmark gives the policy module one seeded
    ``Random`` (only this process, only the exploration draws).
    """
    from serving import rank_policy

    rng = random.Random(seed)
    rank_policy.random = types.SimpleNamespace(Random=lambda: rng)


def log_states(scorer, builder, states, candidates: list[list[dict[str, Any]]], log_dir: Path) -> None:  # noqa: ANN001
    """Rank every state through ``Scorer.rank`` and append each answer to a prediction log (the service's record)."""
    from serving.prediction_log import PredictionLog, rank_record
    from serving.schemas import RankRequest

    log = PredictionLog(log_dir)
    scorer.rank_log = lambda *args: log.append(rank_record(*args))
    try:
        for (_, deal, at, _), cands in zip(states, candidates, strict=True):
            body = builder.body(deal, at)
            body["candidates"] = cands
            body["top_k"] = len(cands)
            body["explain"] = False
            scorer.rank(RankRequest.model_validate_json(json.dumps(body, default=str)))
    finally:
        scorer.rank_log = None
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="tiny", help="tiny (closed form) or a shipped world name")
    parser.add_argument("--activities", type=int, default=40_000)
    parser.add_argument("--states", type=int, default=3000)
    parser.add_argument("--candidates", type=int, default=3, help="candidates per state, drawn at random")
    parser.add_argument("--exploration", type=float, default=0.3)
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--replay-states", type=int, default=500,
                        help="states re-ranked from the dataset by the bundle (the command's --bundle route)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--cut", type=float, default=0.75, help="train before this share of the history")
    parser.add_argument("--work", type=Path, help="keep (and reuse) the dataset and the bundle here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from bench_rank_truth import _truth_candidates, sample_states
    from bench_rank_worlds import all_candidates, history_cut, train_world

    from reports.offpolicy import evaluate_log, read_rank_log, top1_by_score, top1_by_scorer
    from serving.batch_rank import RequestBuilder
    from serving.model_store import load_bundle_dir
    from serving.rank_policy import RankPolicy
    from serving.schemas import get_limits, set_limits
    from serving.scorer import Scorer
    from simulator.ground_truth import GroundTruth
    from simulator.truth import true_outcome_probabilities

    t_start = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-offpolicy-"))
    data = work / f"{args.world}-{args.activities}-s{args.seed}"
    bundle = work / f"bundle-{args.world}-{args.activities}-s{args.seed}"
    fresh = ensure_dataset(data, args.world, args.activities, args.seed)
    cut = history_cut(data, args.cut)
    seconds: dict[str, float] = {}
    if fresh or not (bundle / "manifest.json").exists():
        print(f"training before {cut.date()} on {data} ...", flush=True)
        seconds["train"] = train_world(data, bundle, cut)
    set_limits(replace(get_limits(), max_history_rows=MAX_HISTORY_ROWS))
    gt = GroundTruth.load(data)
    builder = RequestBuilder(gt.dataset)
    states = sample_states(gt, cut, args.states, seed=1)
    pick = np.random.default_rng(args.seed + 11)
    candidates = []
    for _, deal, _, contact in states:
        contacts = builder.account_contacts(deal)[:3] or ([contact] if contact else [])
        pool = all_candidates(contacts)
        keep = sorted(pick.choice(len(pool), size=min(args.candidates, len(pool)), replace=False))
        candidates.append([pool[int(k)] for k in keep])
    model = load_bundle_dir(bundle)
    logging_scorer = Scorer(model, policy=RankPolicy(exploration=args.exploration))
    replay_scorer = Scorer(model, policy=RankPolicy())
    coverage: dict[str, list[bool]] = {}
    refused: dict[str, int] = {}
    first: dict[str, Any] = {}
    t = time.perf_counter()
    seeded_exploration(1000)
    log_dir = work / "log"
    for old in log_dir.glob("predictions-*"):
        old.unlink()
    log_states(logging_scorer, builder, states, candidates, log_dir)
    real = read_rank_log(log_dir)
    ds0 = real.decisions
    assert [d.deal_id for d in ds0] == [s[1] for s in states], "the log's records are not the states sent"
    truth = [true_outcome_probabilities(gt.state(d.deal_id, d.at), _truth_candidates(gt, d.candidates), gt.params)
             for d in ds0]
    seconds["rank and log"] = time.perf_counter() - t
    t = time.perf_counter()
    fixed = {"plan p_outcome": top1_by_score(ds0, "p_outcome"),
             "random": np.array([int(np.random.default_rng(3000 + k).integers(len(d.candidates)))
                                 for k, d in enumerate(ds0)]),
             # what the service shows with exploration off: the logging ranker's own pick (highest propensity)
             "logged ranker, no exploration": np.array([int(np.argmax(d.propensity)) for d in ds0])}
    replayed = top1_by_scorer(ds0[: args.replay_states], replay_scorer, gt.dataset)
    seconds["re-rank from the dataset"] = time.perf_counter() - t
    t = time.perf_counter()
    for rep in range(args.replications):
        draw = np.random.default_rng(2000 + rep)
        if rep == 0:
            log = real  # the answers as Scorer.rank explored and logged them
        else:  # the same states and propensities; the first entry drawn again as the policy draws it
            log = replace(real, decisions=[replace(d, shown=int(draw.choice(len(d.propensity), p=d.propensity)))
                                           for d in ds0])
        ds = log.decisions
        rewards = np.array([float(draw.random() < p[d.shown]) for d, p in zip(ds, truth, strict=True)])
        rows = {}
        for name, chosen in fixed.items():
            ev = evaluate_log(log, None, "simulated truth", name, lambda _d, x=chosen: x, 14,
                              bootstrap=args.bootstrap, seed=rep, rewards=rewards)
            e = ev.estimate
            sup = np.array([d.propensity[k] > 0 for d, k in zip(ds, chosen, strict=True)])
            true_value = float(np.mean([p[k] for p, k, s in zip(truth, chosen, sup, strict=True) if s]))
            if e.ips.low is None:
                refused[name] = refused.get(name, 0) + 1
                inside = False
            else:
                inside = e.ips.low <= true_value <= e.ips.high
                coverage.setdefault(name, []).append(bool(inside))
            rows[name] = (e, true_value, inside, chosen)
        if rep == 0:
            expected = float(np.mean([(d.propensity * p).sum() for d, p in zip(ds, truth, strict=True)]))
            first = {"log": log, "rows": rows, "rewards": rewards, "expected_logging": expected}
    seconds["estimates"] = time.perf_counter() - t

    log, rows = first["log"], first["rows"]
    ds = log.decisions
    greedy = np.array([int(np.argmax(d.propensity)) for d in ds[: len(replayed)]])
    replay_same = float(np.mean(replayed == greedy))
    print(f"world {args.world}, {args.activities:,} activities (seed {args.seed}), trained before {cut.date()}; "
          f"{len(ds)} held-out states, {args.candidates} candidates each, exploration {args.exploration:g} "
          f"({sum(d.explored for d in ds)} explored); rewards drawn from the truth of the candidate shown first")
    print(f"logging policy: mean reward {first['rewards'].mean():.4f}, its true expected value "
          f"{first['expected_logging']:.4f}")
    print(f"  {'ranker':<28} {'supported':>9} {'matched':>7} {'differs':>7} {'expl. matched':>13} {'adv.':>4} "
          f"{'true value':>10} {'IPS [90% interval]':>27} {'SNIPS [90% interval]':>27}  truth inside  verdict")
    for name, (e, true_value, inside, _) in rows.items():
        print(f"  {name:<28} {e.supported:9d} {e.matched:7d} {e.differs:7d} {e.explored_matches:13d} "
              f"{e.rewarded_explored:4d} {true_value:10.4f} {e.ips.text():>27} {e.snips.text():>27}  "
              f"{('yes' if inside else 'NO') if e.ips.value is not None else '-':<12}  {e.verdict}")
        if e.ips.value is None:
            print(f"    {e.reason}")
    print(f"dataset route (the command's --bundle, the same bundle without exploration, states rebuilt from the "
          f"dataset): first choice = the logged ranker's own pick in {replay_same:.1%} of {len(replayed)} states")
    if args.replications > 1:
        print(f"over {args.replications} replications (the first through Scorer.rank and the log; the others draw "
              f"the first entry again from the logged propensities, and new rewards): share of claimed IPS "
              f"intervals holding the true value: "
              + ", ".join(f"{k} {np.mean(v):.0%} of {len(v)}" for k, v in coverage.items())
              + (("; no value claimed: " + ", ".join(f"{k} {v}x" for k, v in refused.items())) if refused else ""))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
          + f", total {time.perf_counter() - t_start:.0f}")
    failed = []
    if rows[GATE][0].ips.value is None:
        failed.append(f"no value claimed for {GATE} (too little information: raise --states)")
    elif not rows[GATE][2]:
        failed.append(f"the true value of {GATE} is outside its IPS interval")
    for name, held in coverage.items():
        if len(held) >= MIN_CLAIMS and np.mean(held) < MIN_COVERAGE:
            failed.append(f"{name}: claimed intervals held the truth in {np.mean(held):.0%} of replications "
                          f"(< {MIN_COVERAGE:.0%})")
    if replay_same < 1.0:
        failed.append("the dataset route did not reproduce the logged ranker's pick in every state")
    print("targets: " + ("; ".join(failed) + ": FAILED" if failed else
                         f"met (true value of {GATE} inside its IPS interval; claimed intervals hold the truth in >= "
                         f"{MIN_COVERAGE:.0%} of replications; the dataset route reproduces the log)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
