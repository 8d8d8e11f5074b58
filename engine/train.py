"""Training on Dask: features on the cluster, boosters fit with ``lightgbm.dask``.

Everything else (splits, gates, leakage probe, calibration, evaluation, the deployed refit,
MLflow) is ``training.train`` / ``training.workflow`` unchanged: the engine builds the
training table on the cluster (:mod:`engine.features`) and sets
``training.train.BOOSTER_TRAINER`` so every booster is fit by :class:`DaskBoosterTrainer`.

``lightgbm.dask`` has no early stopping. The trainer fits in chunks of ``patience`` rounds,
each continuing the previous booster (``init_model``), scores the validation rows here after
each chunk and stops as ``lightgbm.early_stopping`` would: when the best iteration is
``patience`` rounds behind. LightGBM's Dask training opens one listening port per worker while
the workers link up at the start of each fit: its C++ code binds it on 0.0.0.0 whatever
``machines`` says (not controllable from Python); the machine list of the default cluster is
the workers' 127.0.0.1 addresses (docs/scale.md, tests/scale/test_lightgbm_ports.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.cluster import ClusterSettings, open_client
from engine.features import build_distributed_table, gather_rows, gather_table

logger = logging.getLogger(__name__)

CHUNK_ROUNDS = 250
# rows are sent to the workers in blocks of at most this many bytes (one block copied at a time)
BLOCK_BYTES = 128 * 2**20


def _log_loss(y: np.ndarray, raw: np.ndarray) -> float:
    p = np.clip(1.0 / (1.0 + np.exp(-raw)), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class _OrderedClient:
    """The client as ``lightgbm.dask`` sees it: ``who_has`` answers in the order it is asked.

    ``distributed.Client.who_has`` collects the keys in a set, so its answer comes in the order
    of the keys' string hashes, which Python seeds afresh in every process. ``lightgbm.dask``
    orders its machines (each worker's LightGBM rank) by that answer, and LightGBM finds the
    bins of each feature on the rows of one rank's worker: the same rows fit twice gave one
    of two models, depending on the process (measured; docs/scale.md). Answered in the order
    of the parts, the worker holding the first rows is always rank 0. Everything else goes
    to the client unchanged.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def who_has(self, futures: Any = None, **kwargs: Any) -> Any:
        answer = self._client.who_has(futures, **kwargs)
        if futures is None:
            return answer
        order = dict.fromkeys(f.key for f in self._client.futures_of(futures))
        return type(answer)({key: answer[key] for key in order if key in answer})


def _single_part_without_copy() -> bool:
    """Make ``lightgbm.dask`` take a worker's only part as it is (run on every worker).

    ``lightgbm.dask._train_part`` concatenates the parts a worker holds, and holds both the
    parts and their concatenation through the whole fit: each worker's rows twice. With one
    part per worker (``DaskBoosterTrainer._to_cluster``) the concatenation is a copy of that
    part, so a single numpy part is returned as it is. Same rows, same order: the same model.
    At 10M activities a worker passed its 6 GiB limit in the first refit, holding its blocks
    and their concatenation (docs/scale.md). Returns whether the patch is in place.
    """
    import lightgbm.dask as lgb_dask

    current = lgb_dask._concat
    if getattr(current, "_single_part_without_copy", False):
        return True

    def concat(seq: list[Any]) -> Any:
        if len(seq) == 1 and isinstance(seq[0], np.ndarray):
            return seq[0]
        return current(seq)

    concat._single_part_without_copy = True  # type: ignore[attr-defined]
    lgb_dask._concat = concat
    return True


class DaskBoosterTrainer:
    """Fits LightGBM boosters with ``lightgbm.DaskLGBMClassifier`` on the workers of a client.

    Args:
        client: a ``distributed.Client``.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.fits = 0
        self.seconds = 0.0

    def _workers(self) -> int:
        return max(len(self.client.scheduler_info().get("workers", {})), 1)

    def _to_cluster(self, X: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> tuple[Any, Any]:
        """The rows as Dask arrays, sent to the workers directly (not through the graph).

        Each worker gets one contiguous share of the rows as one part: the share is copied here
        into one array a block of at most :data:`BLOCK_BYTES` at a time (taking the rows first,
        ``X[rows]``, held a second copy of most of the matrix through the whole fit), sent, and
        let go before the next. LightGBM takes a worker's only part as it is
        (:func:`_single_part_without_copy`), so each worker holds its rows once, where many
        blocks a worker were held twice (the blocks and LightGBM's concatenation of them).
        """
        import dask
        import dask.array as da

        workers = list(self.client.scheduler_info().get("workers", {})) or [None]
        n = len(X) if rows is None else len(rows)
        share = max(math.ceil(n / len(workers)), 1)
        block = max(BLOCK_BYTES // max(X.shape[1] * X.itemsize, 1), 1)
        self.client.run(_single_part_without_copy)
        xs, ys = [], []
        for i, first in enumerate(range(0, n, share)):
            where = [workers[i % len(workers)]] if workers[0] is not None else None
            last = min(first + share, n)
            # the share is copied into one array a block at a time (X[rows] at once would hold a
            # second copy of most of the matrix here), sent, and let go before the next share
            xp = np.empty((last - first, X.shape[1]), dtype=X.dtype)
            yp = np.empty(last - first, dtype=y.dtype)
            for start in range(first, last, block):
                stop = min(start + block, last)
                take = slice(start, stop) if rows is None else rows[start:stop]
                xp[start - first:stop - first] = X[take]
                yp[start - first:stop - first] = y[take]
            # random keys (hash=False): with content keys, parts of the same bytes in two fits
            # (the same rows for two labels) share a key the scheduler may still be releasing
            # from the last fit; one CI run hung in lightgbm.dask's wait for its parts while
            # fitting the same rows again, and this is the likely cause
            fx, fy = self.client.scatter([xp, yp], workers=where, hash=False)
            xs.append(da.from_delayed(dask.delayed(fx), shape=xp.shape, dtype=xp.dtype))
            ys.append(da.from_delayed(dask.delayed(fy), shape=yp.shape, dtype=yp.dtype))
            del xp, yp
        return da.concatenate(xs), da.concatenate(ys)

    def fit(self, params: dict[str, Any], X: np.ndarray, y: np.ndarray, names: list[str], categorical: list[int],
            rounds: int, valid: tuple[np.ndarray, np.ndarray] | None = None,
            patience: int | None = None, rows: np.ndarray | None = None) -> tuple[Any, int]:
        """Fit one booster on the cluster.

        Args:
            params: LightGBM parameters (``training.train.lgb_params``).
            X: the encoded matrix (all of it the training rows unless ``rows`` says which).
            y: its labels.
            names: feature names.
            categorical: indices of categorical features.
            rounds: the most boosting rounds.
            valid: validation rows and labels for early stopping (None: exactly ``rounds``).
            patience: early-stopping rounds.
            rows: indices of the training rows in ``X`` and ``y`` (None: every row); they are
                taken block by block as they are sent, never all at once.

        Returns:
            The booster (every round fit) and the best iteration (``rounds`` without ``valid``).
        """
        import lightgbm as lgb

        t = time.perf_counter()
        # lightgbm.dask sets the threads from the workers' own; it ignores (and warns about) ours
        p = {k: v for k, v in params.items() if k not in ("num_threads", "n_jobs", "metric")}
        Xd, yd = self._to_cluster(X, y, rows)
        # rounds fit between two looks at the validation loss: at least the patience, so that a
        # stop costs at most one extra chunk; each chunk is one Dask fit (a second or two of set-up)
        chunk = rounds if valid is None or not patience else max(int(patience), CHUNK_ROUNDS)
        booster = None
        done, best = 0, 0
        losses: list[float] = []
        raw = None
        if valid is not None:
            Xv, yv = valid
            raw = np.zeros(len(yv))
        while done < rounds:
            n = min(chunk, rounds - done)
            model = lgb.DaskLGBMClassifier(client=_OrderedClient(self.client), n_estimators=n, **p)
            kwargs: dict[str, Any] = {"feature_name": names, "categorical_feature": categorical}
            if booster is not None:
                kwargs["init_model"] = booster
            with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():  # it prints its port search
                warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                model.fit(Xd, yd, **kwargs)
            booster = model.booster_
            if valid is None:
                done += n
                best = done
                continue
            for i in range(done, done + n):
                raw += booster.predict(Xv, raw_score=True, start_iteration=i, num_iteration=1)
                losses.append(_log_loss(yv, raw))
            done += n
            best = int(np.argmin(losses)) + 1
            if done - best >= patience:
                break
        del Xd, yd
        self.fits += 1
        self.seconds += time.perf_counter() - t
        logger.info("lightgbm.dask: %d rows, %d rounds fit, best %d (%.1fs)", len(X) if rows is None else len(rows),
                    done, best,
                    time.perf_counter() - t)
        return booster, best


def cluster_table_builder(client: Any, n_partitions: int | None = None) -> Any:
    """A ``features.build.build_training_frame`` that builds on the cluster (``models.ranking.TABLE_BUILDER``).

    The table equals the local one, rows in its order (:mod:`engine.features`). Without
    ``columns`` the whole table is gathered here; with them only those columns come here, and
    the rest stays on the workers, which encode the rows asked for
    (:class:`engine.features.ClusterRows`). The feature build itself is never held here.
    """

    def build(dataset: Any, *, until: pd.Timestamp | None = None, horizons: Any = None,
              timezone: str = "UTC", columns: list[str] | None = None) -> Any:
        from features.build import Horizons

        dist = build_distributed_table(client, dataset, until=until, horizons=horizons or Horizons(),
                                       timezone=timezone, n_partitions=n_partitions)
        if columns is None:
            return gather_table(client, dist)
        return gather_rows(client, dist, list(columns))

    return build


def train_on_dask(data: Path, cfg: Any, settings: ClusterSettings, home: Path, until: pd.Timestamp | None = None,
                  progress: Any = None, bundle_out: Path | None = None, n_partitions: int | None = None) -> Any:
    """``activity-scorer train --engine dask``: the local workflow with the table and boosters on Dask.

    Returns:
        ``training.workflow.TrainRun`` (with ``seconds["features"]`` the Dask table's time).

    Raises:
        engine.cluster.ClusterError, engine.partition.PartitionError, features.dataset.DatasetError,
        training.train.TrainingRefused: as the local engine, plus the cluster's own errors.
    """
    from features.build import Horizons
    from features.dataset import load_dataset
    from features.memory_budget import release_unused_memory
    from training.data import TRAINING_TRUTH_COLUMNS, LoadedData, dataset_files_state, read_truth
    from models.ranking import TABLE_BUILDER as RANKING_TABLE_BUILDER
    from training.train import BOOSTER_TRAINER
    from training.workflow import train_and_register

    progress = progress or (lambda _: None)
    files_state = dataset_files_state(Path(data))
    dataset = load_dataset(Path(data))
    with open_client(settings, home) as client:
        t = time.perf_counter()
        progress("building features and labels on the cluster")
        horizons = Horizons(outcome_days=cfg.horizons.outcome_days, output_days=cfg.horizons.output_days)
        dist = build_distributed_table(client, dataset, until=until, horizons=horizons, timezone=cfg.timezone,
                                       n_partitions=n_partitions)
        # only ``loaded`` holds the table: train_and_register lets it go before the ranking table
        loaded = LoadedData(gather_table(client, dist), set(dataset.execution_time_fields), Path(data).resolve(),
                            read_truth(Path(data), TRAINING_TRUTH_COLUMNS), dataset, files_state)
        # only ``loaded`` holds the dataset too: training lets it go through the fits
        del dist, dataset
        # the workers hand back what building the table left in their heaps (at 10M one kept
        # ~1 GB more than the other through every fit)
        client.run(release_unused_memory)
        features_s = time.perf_counter() - t
        trainer = DaskBoosterTrainer(client)
        token = BOOSTER_TRAINER.set(trainer)
        table_token = RANKING_TABLE_BUILDER.set(cluster_table_builder(client, n_partitions))
        try:
            run = train_and_register(Path(data), cfg, until, progress, bundle_out, loaded=loaded)
        finally:
            RANKING_TABLE_BUILDER.reset(table_token)
            BOOSTER_TRAINER.reset(token)
    run.seconds["features"] = features_s
    run.seconds["lightgbm_dask"] = trainer.seconds
    run.seconds["total"] = sum(v for k, v in run.seconds.items() if k not in ("total", "lightgbm_dask"))
    return run
