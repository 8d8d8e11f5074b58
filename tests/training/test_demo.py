"""The demo's dataset-reuse check: same seed, size and simulator format, else simulate again."""

from __future__ import annotations

import json

import pytest

from simulator.generate import FORMAT_VERSION
from training.demo import _same_simulation


def _write(data, **meta):
    data.mkdir(parents=True, exist_ok=True)
    (data / "activities.parquet").write_bytes(b"placeholder")
    (data / "ground_truth.json").write_text(json.dumps(meta), encoding="utf-8")


def test_a_dataset_of_the_current_format_with_the_same_seed_and_size_is_reused(tmp_path):
    _write(tmp_path, seed=0, n_activities_requested=60_000, format_version=FORMAT_VERSION)
    assert _same_simulation(tmp_path, 60_000, 0)


@pytest.mark.parametrize("meta", [
    {"seed": 0, "n_activities_requested": 60_000},  # written before format_version existed
    {"seed": 0, "n_activities_requested": 60_000, "format_version": FORMAT_VERSION - 1},
    {"seed": 1, "n_activities_requested": 60_000, "format_version": FORMAT_VERSION},
    {"seed": 0, "n_activities_requested": 50_000, "format_version": FORMAT_VERSION},
])
def test_an_older_format_or_another_seed_or_size_is_simulated_again(tmp_path, meta):
    _write(tmp_path, **meta)
    assert not _same_simulation(tmp_path, 60_000, 0)


def test_a_broken_or_missing_ground_truth_file_is_simulated_again(tmp_path):
    assert not _same_simulation(tmp_path, 60_000, 0)
    _write(tmp_path, seed=0)
    (tmp_path / "ground_truth.json").write_text("{not json", encoding="utf-8")
    assert not _same_simulation(tmp_path, 60_000, 0)


def test_demo_serves_the_model_it_registered_not_the_default_name():
    from types import SimpleNamespace

    from training.cli import _demo_model_uri

    reg = SimpleNamespace(name="team-a-outcome", version="3")
    promoted = SimpleNamespace(train_run=SimpleNamespace(registered=reg), promotion=SimpleNamespace(promoted=True))
    assert _demo_model_uri(promoted) == "models:/team-a-outcome@champion"
    refused = SimpleNamespace(train_run=SimpleNamespace(registered=reg),
                              promotion=SimpleNamespace(promoted=False, champion_version=None))
    assert _demo_model_uri(refused) == "models:/team-a-outcome/3"  # nothing promoted yet: the challenger
