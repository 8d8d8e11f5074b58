"""The effect model's row budget (``effects.max_activities``): a random sample of whole deals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from models.bundle import FeatureSpec
from models.effects import EffectSettings, support_table
from training.config import load_config
from training.effects import _support_keys, _whole_history_support, effect_inputs, sample_deals
from training.train import model_features


def test_sample_deals_keeps_whole_deals_within_the_budget():
    deals = pd.Series(np.repeat([f"d{i}" for i in range(50)], np.arange(1, 51)), dtype="string")  # 1,275 rows
    keep = np.ones(len(deals), dtype=bool)
    keep[::7] = False  # rows already left out (after the cut) stay out
    out = sample_deals(deals, keep, 400, seed=1)
    assert out.sum() <= 400 and out.sum() > 300  # filled close to the budget
    assert not (out & ~keep).any()
    for d in pd.unique(deals[out]):  # a sampled deal keeps every row it had
        rows = (deals == d).to_numpy()
        assert (out[rows] == keep[rows]).all()
    np.testing.assert_array_equal(out, sample_deals(deals, keep, 400, seed=1))  # seeded
    assert not np.array_equal(out, sample_deals(deals, keep, 400, seed=2))
    np.testing.assert_array_equal(sample_deals(deals, keep, 0, seed=1), keep)  # 0: no limit
    np.testing.assert_array_equal(sample_deals(deals, keep, 10_000, seed=1), keep)  # within the budget


@pytest.fixture(scope="module")
def small_world():
    from features.build import build_training_frame
    from features.dataset import load_dataset
    from simulator.generate import write_simulation
    from simulator.worlds import simulate_world, tiny_world

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        write_simulation(simulate_world(tiny_world(), 6_000, seed=4, oracle=None), Path(tmp) / "data")
        dataset = load_dataset(Path(tmp) / "data")
        frame = build_training_frame(dataset).frame
        cfg = load_config(None)
        feats, _ = model_features(list(build_training_frame(dataset).features), cfg,
                                  set(dataset.execution_time_fields), frame.columns)
        spec = FeatureSpec.fit(feats, frame, cfg.categories.max_levels, cfg.categories.min_count)
        yield dataset, frame, spec


def test_effect_inputs_on_a_sample_read_only_the_sampled_deals(small_world):
    dataset, frame, spec = small_world
    full = effect_inputs(dataset, frame, spec, None)
    part = effect_inputs(dataset, frame, spec, None, max_activities=2_000, seed=3)
    assert full.n_eligible == full.n_activities and part.n_eligible == full.n_activities
    assert 1_500 < part.n_activities <= 2_000
    sampled = set(pd.unique(frame.loc[np.isin(frame[c.ACTIVITY_ID].astype("string"), part.activity_ids),
                                      c.DEAL_ID].astype("string")))
    # every activity of a sampled deal is there, and the advances are the sampled deals' own
    deal_of = frame.set_index(frame[c.ACTIVITY_ID].astype("string"))[c.DEAL_ID].astype("string")
    whole = [a for a in full.activity_ids if deal_of[a] in sampled]  # the rows the full inputs keep
    assert sorted(whole) == sorted(part.activity_ids)
    assert 0 < part.n_events < full.n_events
    assert part.exposure_days < full.exposure_days
    # overlap is judged on the whole history, not the sample
    assert part.support == support_table(full.matrix, _support_keys(spec))
    assert full.support is None
    with pytest.raises(ValueError, match="max_activities"):
        EffectSettings(max_activities=-1)


def test_whole_history_support_encodes_only_the_key_columns_and_counts_the_same(small_world):
    _, frame, spec = small_world
    assert _whole_history_support(spec, frame) == support_table(spec.encode(frame), _support_keys(spec))
    # a spec without seniority: the per-seniority counts are absent, the rest unchanged
    narrow = FeatureSpec([f for f in spec.features if f.name != c.SENIORITY])
    counts = _whole_history_support(narrow, frame)
    assert counts == support_table(narrow.encode(frame), _support_keys(narrow))
    assert counts and set(counts) < set(_whole_history_support(spec, frame))
    keep = np.zeros(len(frame), dtype=bool)
    keep[::3] = True  # the rows asked for, not the whole frame
    assert _whole_history_support(spec, frame, keep) == support_table(spec.encode(frame[keep]), _support_keys(spec))
