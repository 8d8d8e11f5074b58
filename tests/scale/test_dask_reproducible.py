"""The Dask engine's booster fits are reproducible: the same rows give the same model.

``distributed.Client.who_has`` answers in the order of a set of keys (string hashes, seeded
afresh per process), ``lightgbm.dask`` ranks its machines in that order, and each rank finds
the bins of its share of the features on its own rows: before ``engine.train._OrderedClient``
the same rows gave one of two models, fit to fit (docs/scale.md).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask-cluster")]


def _model_text(booster) -> str:
    """The model without the lines that name the ports of the fit."""
    return "\n".join(line for line in booster.model_to_string().splitlines()
                     if "listen_port" not in line and "machines" not in line)


def test_who_has_answers_in_the_order_asked(dask_client):
    from engine.train import _OrderedClient

    workers = list(dask_client.scheduler_info()["workers"])
    futures = [dask_client.scatter(np.full(3, i), workers=[workers[i % len(workers)]]) for i in range(24)]
    ordered = _OrderedClient(dask_client).who_has(futures)
    assert list(ordered) == [f.key for f in futures]
    assert dict(ordered) == dict(dask_client.who_has(futures))  # the same answer, in order
    assert [ordered[f.key][0] for f in futures] == [workers[i % len(workers)] for i in range(24)]


def test_the_same_rows_fit_again_give_the_same_model(dask_client):
    from engine.train import DaskBoosterTrainer

    rng = np.random.default_rng(11)
    X = rng.normal(size=(40_000, 8))
    X[:, 3] = np.where(rng.random(len(X)) < 0.2, np.nan, X[:, 3])
    X[:, 5] = rng.integers(0, 12, len(X))
    y = (X[:, 0] + X[:, 1] * np.nan_to_num(X[:, 3]) + rng.normal(size=len(X)) > 0.4).astype(float)
    params = {"objective": "binary", "verbose": -1, "seed": 1, "deterministic": True, "max_bin": 63}
    names = [f"f{i}" for i in range(X.shape[1])]
    texts = set()
    for _ in range(4):  # before the fix, each fit drew one of two rank orders
        booster, _best = DaskBoosterTrainer(dask_client).fit(params, X, y, names, [5], rounds=40)
        texts.add(_model_text(booster))
    assert len(texts) == 1


def test_the_ranking_model_built_on_the_cluster_is_the_local_one(dataset, dask_client):
    from engine.train import cluster_table_builder
    from features.build import Horizons, build_training_frame
    from models.bundle import FeatureSpec
    from models.ranking import TABLE_BUILDER, fit_ranking_model

    built: list[int] = []

    def counting(client):
        build = cluster_table_builder(client, n_partitions=3)

        def run(*args, **kwargs):
            table = build(*args, **kwargs)
            built.append(len(table.frame))
            return table

        return run

    local_table = build_training_frame(dataset, horizons=Horizons(outcome_days=1))
    spec = FeatureSpec.fit(list(local_table.features), local_table.frame, 50, 5)
    local = fit_ranking_model(dataset, spec)
    token = TABLE_BUILDER.set(counting(dask_client))
    try:
        on_cluster = fit_ranking_model(dataset, spec)
    finally:
        TABLE_BUILDER.reset(token)
    assert built == [len(local_table.frame)]  # the cluster built it, not this process
    assert on_cluster.booster.model_to_string() == local.booster.model_to_string()
    assert on_cluster.metrics["validation_logloss"] == local.metrics["validation_logloss"]
