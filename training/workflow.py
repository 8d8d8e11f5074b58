"""Train and register in one call: what ``activity-scorer train`` and ``demo`` run.

Build the training table, train (:func:`training.train.run_training`), save the bundle,
draw the plots, log everything to MLflow and register a ``challenger`` version.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.memory_budget import release_unused_memory
from training import data as data_mod
from training import tracking
from training.config import TrainConfig
from training.plots import write_plots
from training.train import Progress, TrainingResult, run_training, save_bundle

logger = logging.getLogger(__name__)


@dataclass
class TrainRun:
    """A finished ``train``: the result, where the bundle was saved, and the registry entry."""

    result: TrainingResult
    registered: tracking.RegisteredRun | None
    bundle_dir: Path | None
    seconds: dict[str, float]


def train_and_register(
    data: Path,
    cfg: TrainConfig,
    until: pd.Timestamp | None = None,
    progress: Progress | None = None,
    bundle_out: Path | None = None,
    register: bool = True,
    dataset=None,
    loaded: data_mod.LoadedData | None = None,
) -> TrainRun:
    """Build features from ``data``, train, evaluate, and (by default) log and register.

    Args:
        data: dataset directory.
        cfg: training settings.
        until: use only what was known before this instant.
        progress: called with a short message at each long step.
        bundle_out: also keep the bundle directory here.
        register: log to MLflow and register a version aliased ``challenger``.
        dataset: an already loaded ``features.dataset.Dataset`` of ``data`` (skips reading it again).
        loaded: an already built training table of ``data`` (the Dask engine builds it on a cluster).
            This call owns it: ``loaded.table`` is set to ``None`` once training has encoded it
            (``run_training``'s ``release_table``), so the caller must not hold the table itself
            if its memory is to be freed. The same goes for ``loaded.dataset``: it is let go
            through the fits and read again from ``data`` for the effect and ranking models.
            A ``dataset`` passed in is the caller's, and is kept (letting it go would free nothing).

    Raises:
        training.train.TrainingRefused: the minimum-data gate or the leakage probe left nothing to train.
    """
    progress = progress or (lambda _: None)
    # a dataset this call read (or owns through ``loaded``) can go through the fits and be read
    # again after them; one the caller passed in stays held by the caller anyway
    own_dataset = dataset is None
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    progress("building features and labels")
    if loaded is None:
        loaded = data_mod.load_table(Path(data), cfg, until, dataset=dataset)
    seconds["features"] = time.perf_counter() - t
    # MLflow's input example is a few rows of the table, which training lets go once encoded
    example_frame = loaded.table.frame.head(5).copy()
    had_dataset = loaded.dataset is not None
    result = run_training(loaded, cfg, until=until, progress=progress, release_table=True,
                          release_dataset=own_dataset)
    seconds["training"] = result.seconds.get("total", 0.0)
    if had_dataset and loaded.dataset is None:
        from features.dataset import load_dataset

        if loaded.files_state is not None and data_mod.dataset_files_state(Path(data)) != loaded.files_state:
            raise ValueError(f"{data}: the dataset's files changed while training (they are read again after the "
                             "fits, for the effect and ranking models); train again once nothing writes to them")
        t = time.perf_counter()
        progress("reading the dataset again (for the effect and ranking models)")
        release_unused_memory()
        loaded.dataset = load_dataset(Path(data))
        seconds["reload_dataset"] = time.perf_counter() - t
    registered = None
    with tempfile.TemporaryDirectory(prefix="activity-scorer-train-") as tmp:
        # the deployed (refit) bundle, with the evaluation's models in bundle_dir/evaluation
        bundle_dir = save_bundle(result, Path(bundle_out) if bundle_out else Path(tmp) / "bundle")
        if loaded.dataset is not None:
            t = time.perf_counter()
            progress("estimating each activity's own effect (next-best activities)")
            _add_effect_model(loaded.dataset, result.effect_rows, result, bundle_dir, cfg)
            seconds["effects"] = time.perf_counter() - t
            # the effect model's rows go before the ranking model builds its own table
            result.effect_rows = None
            release_unused_memory()
            t = time.perf_counter()
            progress("training the ranking model (next-best activities)")
            _add_ranking_model(loaded.dataset, result, bundle_dir, cfg)
            seconds["ranking"] = time.perf_counter() - t
        if register:
            t = time.perf_counter()
            progress("drawing plots")
            plots = write_plots(result, Path(tmp) / "plots")
            seconds["plots"] = time.perf_counter() - t
            t = time.perf_counter()
            progress("logging to MLflow and registering")
            # MLflow prints registry messages on stdout; keep stdout for the command's own output.
            with contextlib.redirect_stdout(sys.stderr):
                registered = tracking.log_training(result, bundle_dir, example_frame, loaded.source, plots)
            seconds["mlflow"] = time.perf_counter() - t
    seconds["total"] = sum(seconds.values())
    return TrainRun(result, registered, Path(bundle_out) if bundle_out else None, seconds)


def _add_ranking_model(dataset, result, bundle_dir: Path, cfg) -> None:  # noqa: ANN001
    """Fit the ranking model /rank orders candidates by (models.ranking) into the bundle.

    It learns from the same data, up to the start of the test window so that window stays
    unseen. Too little data for it is not fatal: /rank then orders by the plan model.
    """
    from models.ranking import fit_ranking_model

    try:
        ranking = fit_ranking_model(dataset, result.bundle.spec, until=result.split.test_start,
                                    timezone=cfg.timezone, threads=cfg.lightgbm.num_threads)
    except ValueError as err:
        logger.warning("no ranking model: %s; /rank will order candidates by p_outcome", err)
        return
    ranking.save(bundle_dir)


def _add_effect_model(dataset, frame, result, bundle_dir: Path, cfg) -> None:  # noqa: ANN001
    """Fit the effect model /rank orders candidates by (models.effects) into the bundle.

    Like the ranking model it learns from the history before the test window. Too little data
    is not fatal: /rank then orders by the ranking model (or p_outcome) and says so.
    """
    from training.effects import fit_effect_model

    try:
        effects = fit_effect_model(dataset, frame, result.bundle.spec, until=result.split.test_start,
                                   horizon_days=cfg.horizons.outcome_days, settings=cfg.effects,
                                   threads=cfg.lightgbm.num_threads)
    except ValueError as err:
        logger.warning("no effect model: %s; /rank will not report effects", err)
        return
    effects.save(bundle_dir)
