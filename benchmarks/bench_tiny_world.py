"""Benchmark: /rank's effect order in the tiny world, whose true effects are known in closed form.

Simulates ``simulator.worlds.tiny_world`` (truth = stage x type x automation only; reps pick
types uniformly), trains a small bundle and the effect model with the default settings,
ranks held-out states with every type x tailored/automated plus ``none``, and prints: the
share of states whose first candidate is the truth's best supported one, and the share of
supported candidate pairs in the true order among pairs at least 0.5 and 1.0 log-odds apart;
first for ``--states`` random states (mostly early stages, where deals spend most of their
activities), then for ``--per-stage`` states of every open stage.
``tests/serving/test_rank_closed_form.py`` asserts the per-stage figures on its own fixture
(the same world, size and seed).

    .venv/bin/python benchmarks/bench_tiny_world.py [--activities 160000] [--states 60] [--per-stage 12] [--seed 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=160_000)
    parser.add_argument("--states", type=int, default=60, help="random held-out states")
    parser.add_argument("--per-stage", type=int, default=12, help="held-out states of every open stage")
    parser.add_argument("--seed", type=int, default=3, help="simulation seed")
    args = parser.parse_args()

    from bench_rank_truth import _truth_candidates, sample_states, sample_states_by_stage
    from bench_rank_worlds import all_candidates

    from features import contract as c
    from features.build import build_training_frame
    from features.dataset import load_dataset
    from models.bundle import ModelBundle
    from serving.batch_rank import RequestBuilder
    from serving.model_store import load_bundle_dir
    from serving.schemas import RankRequest, get_limits, set_limits
    from serving.scorer import Scorer
    from simulator.generate import write_simulation
    from simulator.ground_truth import GroundTruth
    from simulator.truth import true_outcome_probabilities
    from simulator.worlds import simulate_world, tiny_world
    from tests.serving.helpers import train_bundle
    from training.effects import fit_effect_model

    with tempfile.TemporaryDirectory(prefix="bench-tiny-") as tmp:
        root = Path(tmp)
        write_simulation(simulate_world(tiny_world(), args.activities, seed=args.seed, oracle=None), root / "data")
        dataset = load_dataset(root / "data")
        bundle = train_bundle(dataset, root / "bundle")
        fit_effect_model(dataset, build_training_frame(dataset).frame, ModelBundle.load(bundle).spec).save(bundle)
        gt = GroundTruth.load(root / "data")
        scorer = Scorer(load_bundle_dir(bundle))
        acts = gt.dataset[c.ACTIVITIES]
        start = acts[c.OCCURRED_AT].min() + (acts[c.OCCURRED_AT].max() - acts[c.OCCURRED_AT].min()) * 0.5
        builder = RequestBuilder(gt.dataset)
        limits = get_limits()
        set_limits(type(limits)(limits.max_items, 100_000, limits.max_candidates))
        def judge(states):  # noqa: ANN001, ANN202
            top1, pairs = [], {0.5: [0, 0], 1.0: [0, 0]}
            for deal, at, contact in states:
                body = builder.body(deal, at, contact)
                body["candidates"] = all_candidates([contact or (builder.account_contacts(deal) or [None])[0]])
                body["top_k"] = len(body["candidates"])
                r = scorer.rank(RankRequest.model_validate_json(json.dumps(body, default=str)))
                shown = [x.activity for x in r.ranked]
                effect = np.array([x.effect for x in r.ranked])
                ov = np.array([x.overlap for x in r.ranked])
                p = true_outcome_probabilities(gt.state(deal, at), _truth_candidates(gt, shown), gt.params)
                z = np.log(p / (1 - p))
                top1.append(int(np.argmax(np.where(ov, z, -np.inf)) == 0))
                for i in np.flatnonzero(ov):
                    for j in np.flatnonzero(ov):
                        for margin, counts in pairs.items():
                            if z[i] - z[j] >= margin - 1e-9:  # the table's 1.0 steps, not float noise
                                counts[0] += int(effect[i] > effect[j])
                                counts[1] += 1
            return top1, pairs

        rows = [("random", judge([(d, a, k) for _, d, a, k in sample_states(gt, start, args.states, seed=1)]))]
        by_stage = sample_states_by_stage(gt, start, args.per_stage, seed=1)
        for stage in sorted({st for *_, st in by_stage}):
            rows.append((f"stage {stage}", judge([(d, a, k) for _, d, a, k, st in by_stage if st == stage])))
    print(f"tiny world, {args.activities:,} activities (seed {args.seed})")
    print(f"  {'states':<8} {'n':>3} {'top-1 right':>12} {'pairs >= 0.5 apart right':>26} {'pairs >= 1.0 apart right':>26}")
    for name, (top1, pairs) in rows:
        cells = [f"{right}/{total} = {right / max(total, 1):.1%}" for right, total in pairs.values()]
        print(f"  {name:<8} {len(top1):>3} {f'{sum(top1)}/{len(top1)}':>12} {cells[0]:>26} {cells[1]:>26}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
