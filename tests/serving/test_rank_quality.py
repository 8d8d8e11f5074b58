"""``/rank`` against the simulator's truth: the ranking must beat naive choices by a clear margin.

A small simulated dataset (30,000 activities), a bundle trained with the training library
plus its ranking model (fitted on the rows before the bundle's test window), and 200
(deal, time) states of the test window ranked by the service's code and scored by the
truth function: ``benchmarks/bench_rank_truth.py`` at a small size.

Measured when the bounds were set (seeds 11 and 5): the top-1's mean true p_outcome was
3.05x and 2.58x that of a random candidate and 2.8x and 1.9x that of ranking by the
type's average true rate; the within-state Spearman correlation with the truth was 0.78
and 0.76, against 0.68 and 0.66 for the type average.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACTIVITIES, SEED, STATES = 30_000, 11, 200


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_rank_truth
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_rank_truth


@pytest.mark.slow
def test_ranking_beats_random_and_type_average_against_the_truth(bench, tmp_path):
    data = bench.ensure_dataset(tmp_path / "data", ACTIVITIES, SEED)
    bundle = bench.train_bundle(data, tmp_path / "bundle", {"labels": ["outcome"]}, ranking=True)
    summary = bench.run(data, bundle, STATES, seed=1)
    report = bench.report(summary)
    ranking, baseline = summary.rows["ranking model"], summary.rows["type average"]
    assert summary.states == STATES, report
    assert ranking["top1"] >= 2.0 * summary.random, report
    assert ranking["top1"] >= 1.5 * baseline["top1"], report
    assert ranking["top5"] >= 1.8 * summary.random, report
    assert ranking["spearman"] >= 0.65, report
    assert ranking["spearman"] >= baseline["spearman"] + 0.05, report
