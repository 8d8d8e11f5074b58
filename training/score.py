"""Batch scoring: ``activity-scorer score --data DIR --out FILE [--since DATE] [--model URI]``.

Features come from ``features.build.build_training_frame`` on the whole dataset, the
same code (and the horizons and time zone of the model) as training, so a batch score
equals what training saw for the same activity. Activities with ``occurred_at`` at or
after ``since`` are scored with the ``full`` variant (they have happened).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features import contract as c
from models.bundle import LABEL_NAMES, SCORE_COLUMNS, VARIANT_FULL
from training import data as data_mod
from training import tracking
from training.config import TrainConfig
from training.promote import config_for_bundle
from training.train import Progress

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = [c.ACTIVITY_ID, *(SCORE_COLUMNS[label] for label in LABEL_NAMES)]


class ScoringError(RuntimeError):
    """Scoring cannot run (bad output path, unknown model, features the model needs are absent)."""


@dataclass
class ScoreResult:
    out: Path
    n_scored: int
    n_activities: int
    since: pd.Timestamp | None
    model_uri: str
    model_name: str | None
    model_version: str | None
    unseen: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out), "n_scored": self.n_scored, "n_activities": self.n_activities,
            "since": self.since.isoformat() if self.since is not None else None, "model_uri": self.model_uri,
            "model_name": self.model_name, "model_version": self.model_version, "unseen_categories": self.unseen,
            "seconds": self.seconds,
        }


def output_format(out: Path) -> str:
    suffix = Path(out).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ScoringError(f"--out {out}: the file name must end in .csv or .parquet")
    return suffix[1:]


def write_scores(scores: pd.DataFrame, out: Path) -> None:
    fmt = output_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        scores.to_csv(out, index=False, lineterminator="\n", float_format="%.6g")
    else:
        scores.to_parquet(out, index=False)


def run_scoring(
    data: Path,
    out: Path,
    cfg: TrainConfig,
    workdir: Path,
    since: pd.Timestamp | None = None,
    model_uri: str | None = None,
    progress: Progress | None = None,
) -> ScoreResult:
    """Score every activity of ``data`` at or after ``since`` and write ``out``.

    Args:
        data: dataset directory.
        out: ``.csv`` or ``.parquet`` file: activity_id, p_outcome, p_output, p_negative.
        cfg: the registered model name (for the default champion URI) and defaults.
        workdir: scratch directory for the downloaded bundle.
        since: first instant scored (default: every activity).
        model_uri: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID``, or a
            bundle directory; default ``models:/<registered_model>@champion``.
        progress: called with a short message at each long step.

    Raises:
        ScoringError: unusable output path, model or features.
    """
    progress = progress or (lambda _: None)
    seconds: dict[str, float] = {}
    out = Path(out)
    output_format(out)
    uri = model_uri or tracking.default_model_uri(cfg.registered_model)
    t = time.perf_counter()
    progress(f"loading model {uri}")
    try:
        bundle, fetched = tracking.load_bundle(uri, Path(workdir))
    except tracking.TrackingError as err:
        raise ScoringError(str(err)) from None
    seconds["load_model"] = time.perf_counter() - t

    t = time.perf_counter()
    progress("building features")
    loaded = data_mod.load_table(Path(data), config_for_bundle(cfg, bundle))
    frame = loaded.table.frame
    seconds["features"] = time.perf_counter() - t

    t = time.perf_counter()
    if since is not None:
        frame = frame[(frame[c.OCCURRED_AT] >= since).to_numpy(dtype=bool)]
    progress(f"scoring {len(frame):,} activities")
    from models.bundle import BundleInputError

    try:
        matrix, unseen = bundle.encode_report(frame)
    except BundleInputError as err:
        raise ScoringError(f"{data}: {err} (the model was trained on data with other fields)") from None
    proba = bundle.predict_proba(matrix, VARIANT_FULL)
    scores = pd.DataFrame({c.ACTIVITY_ID: frame[c.ACTIVITY_ID].to_numpy()})
    for label in LABEL_NAMES:
        scores[SCORE_COLUMNS[label]] = proba[label] if label in proba else float("nan")
    seconds["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    write_scores(scores[OUTPUT_COLUMNS], out)
    seconds["write"] = time.perf_counter() - t
    seconds["total"] = sum(seconds.values())
    n_unseen = sum(unseen.values())
    logger.info("scored n=%d model=%s v%s unseen_levels=%d in %.1fs", len(scores), fetched.name or uri,
                fetched.version, n_unseen, seconds["total"])
    return ScoreResult(out, len(scores), len(loaded.table.frame), since, uri, fetched.name, fetched.version,
                       unseen, seconds)
