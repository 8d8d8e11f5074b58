"""The Dask engine's booster fits are reproducible: the same rows give the same model.

``distributed.Client.who_has`` answers in the order of a set of keys (string hashes, seeded
afresh per process), ``lightgbm.dask`` ranks its machines in that order, and each rank finds
the bins of its share of the features on its own rows: before ``engine.train._OrderedClient``
the same rows gave one of two models, fit to fit (docs/scale.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features import schema as s

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

    built: list[tuple[int, list[str], bool]] = []

    def counting(client):
        build = cluster_table_builder(client, n_partitions=3)

        def run(*args, **kwargs):
            table = build(*args, **kwargs)
            built.append((len(table.frame), list(table.frame.columns), hasattr(table, "encode_rows")))
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
    # the cluster built it, not this process, and sent here only the columns the rows are
    # chosen by: the workers encoded the chosen rows
    assert built == [(len(local_table.frame), [s.LABEL_OUTCOME, s.LEAK_FLAG, c.OCCURRED_AT], True)]
    assert on_cluster.booster.model_to_string() == local.booster.model_to_string()
    assert on_cluster.metrics["validation_logloss"] == local.metrics["validation_logloss"]


def test_each_worker_holds_its_rows_once_as_one_part_and_the_model_is_the_same(dask_client, monkeypatch):
    """A worker's share is sent as one part (copied here a block at a time), which LightGBM takes as it is."""
    import lightgbm.dask as lgb_dask

    import engine.train as et

    rng = np.random.default_rng(5)
    X = rng.normal(size=(30_000, 6))
    y = (X[:, 0] - X[:, 2] + rng.normal(size=len(X)) > 0).astype(float)
    rows = np.flatnonzero(rng.random(len(X)) < 0.7)
    monkeypatch.setattr(et, "BLOCK_BYTES", 6 * 8 * 1_000)  # 1,000 rows a block: ~10 blocks a worker
    trainer = et.DaskBoosterTrainer(dask_client)
    Xd, yd = trainer._to_cluster(X, y, rows)
    workers = len(dask_client.scheduler_info()["workers"])
    assert len(Xd.chunks[0]) == workers and len(yd.chunks[0]) == workers  # one part per worker
    np.testing.assert_array_equal(Xd.compute(), X[rows])
    np.testing.assert_array_equal(yd.compute(), y[rows])

    def single_part_is_not_copied():
        part = np.arange(6.0).reshape(3, 2)
        return lgb_dask._concat([part]) is part and lgb_dask._concat([part, part]).shape == (6, 2)

    assert all(dask_client.run(single_part_is_not_copied).values())
    # the model of rows sent in many blocks is the one of each worker's share sent whole
    params = {"objective": "binary", "verbose": -1, "seed": 1, "deterministic": True, "max_bin": 63}
    names = [f"f{i}" for i in range(X.shape[1])]
    blocks, _ = trainer.fit(params, X, y, names, [], rounds=30, rows=rows)
    monkeypatch.setattr(et, "BLOCK_BYTES", 2**40)
    whole, _ = trainer.fit(params, X, y, names, [], rounds=30, rows=rows)
    assert _model_text(blocks) == _model_text(whole)


def test_rows_encoded_on_the_workers_are_the_rows_encoded_here(dataset, dask_client):
    """``ClusterRows.encode_rows`` gives what encoding the gathered table gives, for rows in any order."""
    from engine.features import build_distributed_table, gather_rows, gather_table
    from features.build import Horizons
    from models.bundle import FeatureSpec

    dist = build_distributed_table(dask_client, dataset, horizons=Horizons(outcome_days=1), n_partitions=3)
    whole = gather_table(dask_client, dist)
    some = gather_rows(dask_client, dist, [c.OCCURRED_AT, s.LABEL_OUTCOME])
    assert list(some.frame.columns) == [c.OCCURRED_AT, s.LABEL_OUTCOME] and len(some.parts) == 3
    pd.testing.assert_frame_equal(some.frame, whole.frame[[c.OCCURRED_AT, s.LABEL_OUTCOME]])
    spec = FeatureSpec.fit(list(whole.features), whole.frame, 50, 5)
    rows = np.random.default_rng(2).permutation(len(whole.frame))[: len(whole.frame) // 2]
    np.testing.assert_array_equal(some.encode_rows(spec, rows), spec.encode(whole.frame, rows=rows))
    np.testing.assert_array_equal(some.encode_rows(spec, np.arange(0)), np.empty((0, len(spec))))
    with pytest.raises(KeyError, match="no_such_column"):
        gather_rows(dask_client, dist, ["no_such_column"])
