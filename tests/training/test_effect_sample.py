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


def test_effect_rows_give_the_inputs_of_the_whole_table(small_world):
    from training.effects import select_effect_rows

    dataset, frame, spec = small_world
    cut = frame[c.OCCURRED_AT].quantile(0.8)
    for max_activities in (0, 2_000):  # the whole history, and a sample of deals
        whole = effect_inputs(dataset, frame, spec, cut, max_activities, seed=3)
        rows = select_effect_rows(frame, spec, cut, max_activities, seed=3)
        assert len(rows.frame) == whole.n_activities < len(frame)
        part = effect_inputs(dataset, rows, spec, cut)
        for name in ("matrix", "act_deal", "act_rep", "act_t", "ev_deal", "ev_t", "activity_ids", "deal_exposure_days"):
            np.testing.assert_array_equal(getattr(part, name), getattr(whole, name), err_msg=name)
        assert (part.n_eligible, part.support, part.end_t) == (whole.n_eligible, whole.support, whole.end_t)
        assert (part.support is None) == (max_activities == 0)
    with pytest.raises(ValueError, match="effect rows were chosen before"):
        effect_inputs(dataset, rows, spec, cut + pd.Timedelta(days=1))


@pytest.mark.slow
def test_training_that_lets_its_table_go_trains_the_same_models(small_world, tmp_path):
    """``run_training(release_table=True)``, as ``train`` runs it: the table goes once encoded,
    and the bundle, the serving context and the effect model are the ones of the run that kept it."""
    from dataclasses import replace

    from features.build import build_training_frame
    from training.data import LoadedData
    from training.effects import fit_effect_model
    from training.train import run_training

    dataset, _, _ = small_world
    cfg = load_config(None)
    cfg = replace(cfg, effects=replace(cfg.effects, max_activities=2_000))
    runs, loads = [], []
    for release in (False, True):
        loaded = LoadedData(build_training_frame(dataset), set(dataset.execution_time_fields), None, None, dataset)
        loads.append(loaded)
        runs.append(run_training(loaded, cfg, release_table=release))
    kept, released = runs
    assert loads[0].table is not None and loads[1].table is None
    assert kept.effect_rows is None and released.effect_rows is not None
    assert released.bundle.serving_context == kept.bundle.serving_context and released.bundle.serving_context
    assert released.fingerprint == kept.fingerprint and released.n_rows == kept.n_rows
    assert set(released.bundle.boosters) == set(kept.bundle.boosters)
    for key, booster in kept.bundle.boosters.items():
        assert released.bundle.boosters[key].model_to_string() == booster.model_to_string(), key
    assert released.metrics == kept.metrics
    pd.testing.assert_series_equal(released.test_types, kept.test_types)
    effects = [fit_effect_model(dataset, frame, run.bundle.spec, until=run.split.test_start, settings=cfg.effects)
               for run, frame in ((kept, loads[0].table.frame), (released, released.effect_rows))]
    assert effects[0].metrics["activities"] < effects[0].metrics["activities_eligible"]  # a sample was drawn
    for model, name in zip(effects, ("kept", "released")):
        model.metrics = {k: v for k, v in model.metrics.items() if not k.startswith("seconds")}
        model.save(tmp_path / name)
    files = sorted(q.relative_to(tmp_path / "kept") for q in (tmp_path / "kept").rglob("*") if q.is_file())
    assert files and files == sorted(q.relative_to(tmp_path / "released")
                                     for q in (tmp_path / "released").rglob("*") if q.is_file())
    for name in files:  # boosters, bootstrap, support and metrics: the same bytes
        assert (tmp_path / "released" / name).read_bytes() == (tmp_path / "kept" / name).read_bytes(), name


@pytest.mark.slow
def test_train_lets_the_dataset_go_through_the_fits_and_reads_it_again(tmp_path):
    """``train_and_register`` holds no dataset through the fits when it owns one (it read it, or
    it was handed ``loaded``), reads it again for the effect and ranking models, and those come
    out the same as from a run whose caller kept its dataset."""
    import json
    from dataclasses import replace

    from features.dataset import load_dataset
    from simulator.generate import write_simulation
    from simulator.worlds import simulate_world, tiny_world
    from training.data import load_table
    from training.workflow import train_and_register

    data = tmp_path / "data"
    write_simulation(simulate_world(tiny_world(), 6_000, seed=4, oracle=None), data)
    cfg = load_config(None)
    cfg = replace(cfg, effects=replace(cfg.effects, max_activities=2_000))

    loaded = load_table(data, cfg)
    seen: dict[str, object] = {}

    def watch(message: str) -> None:
        if message == "encoding features":
            seen["encoding"] = loaded.dataset
        if message.startswith("training ") and "fits" not in seen:
            seen["fits"] = loaded.dataset
        if message.startswith("estimating each activity's own effect"):
            seen["effects"] = loaded.dataset

    owned = train_and_register(data, cfg, progress=watch, register=False, bundle_out=tmp_path / "owned",
                               loaded=loaded)
    assert seen["encoding"] is None and seen["fits"] is None  # let go before encoding, kept out through the fits
    assert seen["effects"] is not None and loaded.dataset is seen["effects"]  # read again after them
    assert owned.seconds["reload_dataset"] > 0

    kept = load_dataset(data)
    held = train_and_register(data, cfg, register=False, bundle_out=tmp_path / "held", dataset=kept)
    assert "reload_dataset" not in held.seconds  # the caller's dataset is kept, not read twice

    def model_files(root):
        return sorted(q.relative_to(root) for q in root.rglob("*")
                      if q.is_file() and q.parts[len(root.parts)] in ("effects", "ranking"))

    files = model_files(tmp_path / "owned")
    assert any(q.parts[0] == "effects" for q in files) and any(q.parts[0] == "ranking" for q in files)
    assert files == model_files(tmp_path / "held")
    for name in files:
        a, b = (tmp_path / "owned" / name).read_bytes(), (tmp_path / "held" / name).read_bytes()
        if name.suffix == ".json":  # the same but for timings
            a, b = (json.loads(x) for x in (a, b))
            for meta in (a, b):
                meta["metrics"] = {k: v for k, v in meta["metrics"].items() if not k.startswith("seconds")}
        assert a == b, name


@pytest.mark.slow
def test_train_refuses_a_dataset_whose_files_changed_while_it_trained(tmp_path):
    """The dataset is read again after the fits: if its files changed meanwhile, the effect and
    ranking models would learn from other data than the boosters, so ``train`` stops and says so."""
    import os

    from simulator.generate import write_simulation
    from simulator.worlds import simulate_world, tiny_world
    from training.workflow import train_and_register

    data = tmp_path / "data"
    write_simulation(simulate_world(tiny_world(), 6_000, seed=4, oracle=None), data)
    table = next(p for p in sorted(data.iterdir()) if p.name.startswith("activities"))

    def touch_once(message: str) -> None:
        if message.startswith("training outcome/plan"):
            st = table.stat()
            os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    with pytest.raises(ValueError, match="the dataset's files changed while training"):
        train_and_register(data, load_config(None), progress=touch_once, register=False)
