"""Batch scoring on Dask: the table built on the cluster, scored with ``map_partitions``.

Each partition of the training table (:mod:`engine.features`) is encoded and scored with the
model bundle on the worker that holds it (the bundle is sent once to every worker). The
scores equal the local ``score`` command's; rows come in partition order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.cluster import ClusterSettings, open_client
from engine.features import build_distributed_table
from engine.output import write_frames
from features import contract as c

logger = logging.getLogger(__name__)

UNSEEN = "__unseen__"  # per partition: the unseen-level counts, as JSON text in a one-row column


def _score_partition(frame: pd.DataFrame, bundle: Any, since: pd.Timestamp | None) -> pd.DataFrame:
    """One partition's scores: ``activity_id, p_outcome, p_output, p_negative`` (+ unseen counts)."""
    import json

    from models.bundle import LABEL_NAMES, SCORE_COLUMNS, VARIANT_FULL

    if since is not None:
        frame = frame[(frame[c.OCCURRED_AT] >= since).to_numpy(dtype=bool)]
    out = pd.DataFrame({c.ACTIVITY_ID: frame[c.ACTIVITY_ID].astype("string").to_numpy()})
    if len(frame):
        matrix, unseen = bundle.encode_report(frame)
        proba = bundle.predict_proba(matrix, VARIANT_FULL)
    else:
        unseen, proba = {}, {}
    for label in LABEL_NAMES:
        out[SCORE_COLUMNS[label]] = proba[label] if label in proba else np.full(len(out), np.nan)
    out[UNSEEN] = pd.array([json.dumps(unseen)] + [None] * max(len(out) - 1, 0), dtype="string")[:len(out)]
    return out


def score_on_dask(data: Path, out: Path, cfg: Any, workdir: Path, settings: ClusterSettings, home: Path,
                  since: pd.Timestamp | None = None, model_uri: str | None = None, progress: Any = None,
                  n_partitions: int | None = None) -> Any:
    """``activity-scorer score --engine dask``: as ``training.score.run_scoring``, on the cluster.

    Returns:
        ``training.score.ScoreResult``.

    Raises:
        training.score.ScoringError: unusable output path, model or features.
    """
    import json

    import dask.dataframe as dd

    from features.build import Horizons
    from features.dataset import load_dataset
    from models.bundle import BundleInputError
    from training import tracking
    from training.promote import config_for_bundle
    from training.score import OUTPUT_COLUMNS, ScoreResult, ScoringError, output_format

    progress = progress or (lambda _: None)
    seconds: dict[str, float] = {}
    out = Path(out)
    output_format(out)  # refuses a suffix it cannot write, before the cluster starts
    uri = model_uri or tracking.default_model_uri(cfg.registered_model)
    t = time.perf_counter()
    progress(f"loading model {uri}")
    try:
        bundle, fetched = tracking.load_bundle(uri, Path(workdir))
    except tracking.TrackingError as err:
        raise ScoringError(str(err)) from None
    seconds["load_model"] = time.perf_counter() - t
    bcfg = config_for_bundle(cfg, bundle)
    dataset = load_dataset(Path(data))
    with open_client(settings, home) as client:
        t = time.perf_counter()
        progress("building features on the cluster")
        horizons = Horizons(outcome_days=bcfg.horizons.outcome_days, output_days=bcfg.horizons.output_days)
        dist = build_distributed_table(client, dataset, horizons=horizons, timezone=bcfg.timezone,
                                       n_partitions=n_partitions)
        seconds["features"] = time.perf_counter() - t
        t = time.perf_counter()
        progress(f"scoring {dist.stats.get('activities', 0):,} activities on the cluster")
        [remote_bundle] = client.scatter([bundle], broadcast=True)
        table = dd.from_delayed(dist.parts, meta=client.submit(lambda f: f.head(0), dist.parts[0]).result(),
                                verify_meta=False)
        meta = _score_partition(table._meta, bundle, None)
        scored = table.map_partitions(_score_partition, remote_bundle, since, meta=meta)
        parts = client.compute(scored.to_delayed())
        n_scored, unseen = 0, {}

        def scored_frames():  # noqa: ANN202 - one partition at a time, counted on the way
            nonlocal n_scored
            for fut in parts:
                try:
                    frame = fut.result()
                except BundleInputError as err:
                    raise ScoringError(f"{data}: {err} (the model was trained on data with other fields)") from None
                if len(frame) and pd.notna(frame[UNSEEN].iloc[0]):
                    for k, v in json.loads(frame[UNSEEN].iloc[0]).items():
                        unseen[k] = unseen.get(k, 0) + int(v)
                n_scored += len(frame)
                yield frame[OUTPUT_COLUMNS]

        write_frames(scored_frames(), out, {"float_format": "%.6g"})
        seconds["predict_write"] = time.perf_counter() - t
    seconds["total"] = sum(seconds.values())
    logger.info("scored n=%d on Dask model=%s v%s in %.1fs", n_scored, fetched.name or uri, fetched.version,
                seconds["total"])
    return ScoreResult(out, n_scored, int(dist.stats.get("activities", 0)), since, uri, fetched.name,
                       fetched.version, unseen, seconds)
