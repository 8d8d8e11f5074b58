"""/rank in the tiny world, whose every candidate's true effect is known in closed form.

The truth there reads only the stage, the type and the automated flag
(``simulator.worlds.tiny_effect_table``), advances are recorded 0-2 days after their cause,
and reps pick types uniformly. The effect model is fitted with the default settings. What it
gets (40,000 activities, 60 states; ``benchmarks/bench_tiny_world.py``, docs/effects.md): the
truth's best supported candidate first in 59 of 60 states, 2,223 of the 2,225 candidate pairs
whose true log-odds differ by at least 1 in the right order (96% of pairs 0.5 apart). Before
main effects were fitted first (``candidate_interactions: staged``) it was 92% and 99.5%: a
type's stage profile was shrunk toward its other stages. Not exact yet: one state's top-1
and two pairs are still misordered.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from tests.serving.helpers import PRIVACY_ENV, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tiny_world")]

N_STATES = 40


@pytest.fixture(scope="module")
def ranked_states(tiny_world_run):
    """(activities best first, effects, overlap, true log-odds) for held-out states of the tiny world."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_rank_truth import _truth_candidates, sample_states
    from bench_rank_worlds import all_candidates

    from serving.batch_rank import RequestBuilder
    from serving.model_store import load_bundle_dir
    from serving.schemas import RankRequest, get_limits, set_limits
    from serving.scorer import Scorer
    from simulator.ground_truth import GroundTruth
    from simulator.truth import true_outcome_probabilities

    data, bundle = tiny_world_run
    gt = GroundTruth.load(data)
    scorer = Scorer(load_bundle_dir(bundle))
    acts = gt.dataset[c.ACTIVITIES]
    start = acts[c.OCCURRED_AT].min() + (acts[c.OCCURRED_AT].max() - acts[c.OCCURRED_AT].min()) * 0.5
    builder = RequestBuilder(gt.dataset)
    limits = get_limits()
    set_limits(type(limits)(limits.max_items, 100_000, limits.max_candidates))
    out = []
    try:
        for _, deal, at, contact in sample_states(gt, start, N_STATES, seed=1):
            body = builder.body(deal, at, contact)
            body["candidates"] = all_candidates([contact or (builder.account_contacts(deal) or [None])[0]])
            body["top_k"] = len(body["candidates"])
            r = scorer.rank(RankRequest.model_validate_json(json.dumps(body, default=str)))
            shown = [x.activity for x in r.ranked]
            p = true_outcome_probabilities(gt.state(deal, at), _truth_candidates(gt, shown), gt.params)
            out.append((shown, np.array([x.effect for x in r.ranked]), np.array([x.overlap for x in r.ranked]),
                        np.log(p / (1 - p))))
    finally:
        set_limits(limits)
    return out


def test_the_truths_best_comes_first_in_nearly_every_state(ranked_states):
    hits = [int(np.argmax(np.where(ov, z, -np.inf)) == 0) for _, _, ov, z in ranked_states]
    assert np.mean(hits) >= 0.95, f"top-1 right in {np.mean(hits):.0%} of {len(hits)} states"


def test_pairs_a_log_odds_apart_are_in_the_true_order(ranked_states):
    right = total = 0
    for _, effect, ov, z in ranked_states:
        for i in np.flatnonzero(ov):
            for j in np.flatnonzero(ov):
                if z[i] - z[j] >= 1.0:
                    total += 1
                    right += int(effect[i] > effect[j])
    assert total > 1000 and right / total >= 0.995, f"{right}/{total}"


def test_automation_never_ranks_above_the_same_touch_by_hand(ranked_states):
    """The tiny world's automated touch is 1 log-odds worse than by hand: never above it."""
    for shown, _, _, _ in ranked_states:
        pos = {(a[c.TYPE], bool(a.get(c.IS_AUTOMATED))): k for k, a in enumerate(shown)}
        for (t, auto), k in pos.items():
            if auto:
                assert k > pos[(t, False)], f"automated {t} at {k}, by hand at {pos[(t, False)]}"


def test_rank_command_lists_every_open_deal_best_first(tiny_world_run, tmp_path):
    """``activity-scorer rank``: a rep's daily list for every open deal, from the same effects."""
    data, bundle = tiny_world_run
    acts = pd.read_parquet(data / "activities.parquet")
    at = (acts[c.OCCURRED_AT].max() - pd.Timedelta(days=20)).normalize()
    out = tmp_path / "daily.csv"
    env = {**PRIVACY_ENV, "PATH": "/usr/bin:/bin", "ACTIVITY_SCORER_HOME": str(tmp_path / "home"),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "training.cli", "rank", "--data", str(data), "--at", at.isoformat(),
           "--out", str(out), "--model", str(bundle), "--top-k", "3", "--json"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(out)
    assert {"deal_id", "rank", "type", "effect", "effect_low", "effect_high", "overlap", "net_effect"} <= set(
        table.columns), list(table.columns)
    assert table.groupby("deal_id")["rank"].apply(list).map(lambda r: r == list(range(1, len(r) + 1))).all()
    assert (table.groupby("deal_id").size() <= 3).all() and table["deal_id"].nunique() > 10
    free = table[table["overlap"].astype(bool) & table["guardrail"].isna()].sort_values(["deal_id", "rank"])
    assert free.groupby("deal_id")["net_effect"].apply(lambda v: bool((np.diff(v.to_numpy()) <= 1e-12).all())).all()
    summary = json.loads(done.stdout)
    assert summary["deals"] == table["deal_id"].nunique()

    bad = subprocess.run([*cmd[:-1], "--at", "yesterday-ish"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "--at" in bad.stderr and "Traceback" not in bad.stderr
