"""``activity-scorer recalibrate``: refit the champion's calibrators on the latest closed labels.

The boosters stay; only the map from raw score to probability is refit, for every (label,
variant), on the activities that

- happened after the end of the model's training data (its boosters never saw them), and
- within the last ``--window`` days (config ``recalibrate.window_days``) of closed labels,
- and whose label horizon had closed before the end of the data (no future labels: the
  feature pipeline leaves every other label blank).

Those rows, oldest first, are cut in two: the older ``1 - holdout_share`` fits the new
calibrators (scikit-learn, :func:`models.calibration.fit_calibrator`), the newest
``holdout_share`` judges old against new with the promotion gate (``training.promote.gate``:
same AUC within tolerance, ECE not worse, the absolute gates). The result is registered as the
``challenger`` either way (tags say what the gate found) and becomes the ``champion`` only when
the gate passes.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # the command is registered at CLI start-up: heavy imports wait until it runs
    import pandas as pd

    from models.bundle import ModelBundle

logger = logging.getLogger(__name__)


class RecalibrationError(ValueError):
    """Recalibration cannot run (no new closed labels, no champion...); the message says why."""


@dataclass
class Recalibration:
    """What recalibrate measured, registered and decided."""

    name: str
    from_version: str | None
    version: str | None
    window: dict[str, Any]
    old: dict[str, dict[str, dict[str, float]]]  # label -> variant -> holdout metrics
    new: dict[str, dict[str, dict[str, float]]]
    methods: dict[str, str]
    checks: list = field(default_factory=list)
    promoted: bool = False

    @property
    def passed(self) -> bool:
        return all(ch.ok for ch in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [ch.rule for ch in self.checks if not ch.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "from_version": self.from_version, "version": self.version,
                "window": self.window, "passed": self.passed, "promoted": self.promoted, "reasons": self.reasons,
                "methods": self.methods, "holdout_old": self.old, "holdout_new": self.new,
                "checks": [ch.__dict__ for ch in self.checks]}


def recalibrated_bundle(bundle: ModelBundle, frame: pd.DataFrame, cfg, window_days: int | None = None,  # noqa: ANN001
                        data_end: pd.Timestamp | None = None) -> tuple[ModelBundle, dict[str, Any], dict, dict, dict]:
    """New calibrators for ``bundle`` from the closed labels of ``frame`` (see module docstring).

    Returns:
        The recalibrated bundle, the window description, holdout metrics of the old and the
        new calibration (label -> variant -> metrics) and the method per ``label/variant``.

    Raises:
        RecalibrationError: too few closed labels after the model's training data.
    """
    import numpy as np
    import pandas as pd

    from features import contract as c
    from features.schema import LABELS, LEAK_FLAG
    from models.bundle import ModelBundle
    from models.calibration import fit_calibrator
    from models.metrics import binary_metrics

    rc = cfg.recalibrate
    days = window_days or rc.window_days
    trained_end = pd.Timestamp(bundle.manifest.data_window["data_end"])
    occ = frame[c.OCCURRED_AT]
    end = pd.Timestamp(data_end) if data_end is not None else occ.max()
    horizon = pd.Timedelta(days=float(bundle.manifest.horizons.get("outcome_days", 14)))
    start = max(trained_end, end - horizon - pd.Timedelta(days=days))
    y_out = frame[LABELS["outcome"]].to_numpy(dtype=np.float64, na_value=np.nan)
    rows = ((occ >= start).to_numpy(dtype=bool)) & ~np.isnan(y_out)
    if LEAK_FLAG in frame.columns:
        rows &= ~frame[LEAK_FLAG].to_numpy(dtype=bool, na_value=False)
    idx = np.flatnonzero(rows)
    need = int(np.ceil(rc.min_rows / (1 - rc.holdout_share)))
    if len(idx) < need:
        raise RecalibrationError(
            f"only {len(idx):,} activities with a closed outcome label fall after the model's training data "
            f"(ends {trained_end.isoformat()[:19]}) in the last {days} days before the label horizon; needs {need:,} "
            f"({rc.min_rows:,} to fit, the rest to judge): wait for more closed labels or widen --window")
    win = frame.iloc[idx].sort_values(c.OCCURRED_AT, kind="stable")
    cut = int(len(win) * (1 - rc.holdout_share))
    fit_rows, hold_rows = win.iloc[:cut], win.iloc[cut:]
    m_fit, m_hold = bundle.encode(fit_rows), bundle.encode(hold_rows)
    calibrators = dict(bundle.calibrators)
    old, new, methods = {}, {}, {}
    for (label, variant), booster in bundle.boosters.items():
        y_fit = fit_rows[LABELS[label]].to_numpy(dtype=np.float64, na_value=np.nan)
        y_hold = hold_rows[LABELS[label]].to_numpy(dtype=np.float64, na_value=np.nan)
        ok_fit, ok_hold = ~np.isnan(y_fit), ~np.isnan(y_hold)
        if ok_fit.sum() < rc.min_rows or not ok_hold.any():
            logger.warning("recalibrate: %s/%s keeps its calibrator (%d closed labels to fit)", label, variant,
                           int(ok_fit.sum()))
            continue
        raw_fit = booster.predict(m_fit[ok_fit], raw_score=True)
        cal = fit_calibrator(raw_fit, y_fit[ok_fit], cfg.calibration.isotonic_min_rows,
                             cfg.calibration.isotonic_min_positives)
        raw_hold = booster.predict(m_hold[ok_hold], raw_score=True)
        old.setdefault(label, {})[variant] = binary_metrics(y_hold[ok_hold],
                                                            bundle.calibrators[(label, variant)].transform(raw_hold))
        new.setdefault(label, {})[variant] = binary_metrics(y_hold[ok_hold], cal.transform(raw_hold))
        calibrators[(label, variant)] = cal
        methods[f"{label}/{variant}"] = cal.method
    # the gate reads requested variants ("full", "plan"): a bundle without execution features serves both with plan
    for metrics in (old, new):
        for by_variant in metrics.values():
            for requested, trained in bundle.manifest.variants.items():
                if trained in by_variant and requested not in by_variant:
                    by_variant[requested] = by_variant[trained]
    window = {"start": start.isoformat(), "end": end.isoformat(), "fit_rows": int(len(fit_rows)),
              "holdout_rows": int(len(hold_rows)),
              "holdout_start": hold_rows[c.OCCURRED_AT].iloc[0].isoformat() if len(hold_rows) else None,
              "model_data_end": trained_end.isoformat()}
    extra = dict(bundle.manifest.extra or {}) | {"recalibrated": window | {"methods": methods}}
    metrics = dict(bundle.metrics) | {"recalibration": {"window": window, "holdout_old": old, "holdout_new": new}}
    out = ModelBundle(replace(bundle.manifest, extra=extra, model_version=None, run_id=None,
                              trained_at=pd.Timestamp.now(tz="UTC").isoformat()),
                      bundle.spec, bundle.boosters, calibrators, metrics, bundle.serving_context)
    return out, window, old, new, methods


def settled_frame(loaded, bundle: ModelBundle, cfg, end: pd.Timestamp) -> pd.DataFrame:  # noqa: ANN001
    """The training table with the labels that had settled by ``end`` filled in, as training does (training.purge)."""
    from features.schema import LABELS
    from training.purge import fill_settled_labels, settle_days

    horizons = {"outcome_days": cfg.horizons.outcome_days, "output_days": cfg.horizons.output_days}
    settles = settle_days(loaded.dataset, horizons, list(bundle.labels), cfg.splits.purge_settled_labels, end)
    frame, _ = fill_settled_labels(loaded.table.frame, loaded.dataset, settles, end,
                                   {lab: LABELS[lab] for lab in bundle.labels})
    return frame


def run_recalibration(cfg, data: Path | None = None, window_days: int | None = None, model: str | None = None,  # noqa: ANN001
                      promote: bool = True, progress=None) -> Recalibration:  # noqa: ANN001
    """Recalibrate the champion (or ``model``), register the result, promote it when the gate passes."""
    import pandas as pd

    from training import data as data_mod
    from training import tracking
    from training.promote import GateCheck, PromotionDecision, _promote, config_for_bundle, gate

    progress = progress or (lambda _: None)
    name = cfg.registered_model
    uri = model or tracking.default_model_uri(name)
    with tempfile.TemporaryDirectory(prefix="activity-scorer-recalibrate-") as tmp:
        progress(f"loading {uri}")
        try:
            bundle, fetched = tracking.load_bundle(uri, Path(tmp) / "model")
        except tracking.TrackingError as err:
            raise RecalibrationError(str(err)) from None
        source = data or (bundle.manifest.extra or {}).get("source")
        if not source or not Path(source).is_dir():
            raise RecalibrationError(f"the dataset {source!r} recorded with the model is not there; pass --data DIR")
        bcfg = config_for_bundle(cfg, bundle)
        progress(f"building features and labels from {source}")
        loaded = data_mod.load_table(Path(source), bcfg, None)
        end = pd.Timestamp(loaded.table.data_end)
        end = end.tz_localize("UTC") if end.tzinfo is None else end
        frame = settled_frame(loaded, bundle, bcfg, end)
        progress("refitting the calibrators on the latest closed labels")
        new_bundle, window, old, new, methods = recalibrated_bundle(bundle, frame, cfg, window_days, end)
        checks: list[GateCheck] = gate(new, old, cfg)
        out_dir = new_bundle.save(Path(tmp) / "bundle")
        # everything else the bundle carries stays as it was: the evaluation models (still the boosters'
        # honest evaluation), the ranking and effect models
        for p in fetched.path.iterdir():
            dst = out_dir / p.name
            if not dst.exists():
                (shutil.copytree if p.is_dir() else shutil.copy2)(p, dst)
        passed = all(ch.ok for ch in checks)
        shim = SimpleNamespace(config=cfg, bundle=new_bundle, fingerprint=new_bundle.manifest.input_fingerprint,
                               leakage=SimpleNamespace(dropped=[], to_dict=lambda: {}), n_rows=window["fit_rows"],
                               features_used=list(new_bundle.spec.names))
        tags = {"recalibrated_from": str(fetched.version or uri), "recalibration.window":
                f"{window['start']}..{window['end']}", "recalibration.gate": "passed" if passed else "refused"}
        progress("registering the recalibrated model")
        with contextlib.redirect_stdout(sys.stderr):
            reg = tracking.log_training(shim, out_dir, loaded.table.frame, Path(source), [], tags)
    result = Recalibration(name, str(fetched.version) if fetched.version else None, reg.version, window, old, new,
                           methods, checks)
    if passed and promote:
        decision = PromotionDecision(name, reg.version, result.from_version,
                                     {"start": window["holdout_start"], "end": window["end"],
                                      "what": "the newest closed labels (recalibration holdout)"},
                                     new, old, checks)
        _promote(decision, reg.run_id, False, None)
        result.promoted = True
    return result


def recalibrate(
    data: Path = typer.Option(None, "--data", help="Dataset directory (default: the one the champion was trained on)."),
    window: int = typer.Option(None, "--window", min=1, help="Days of closed labels to use (config "
                                                            "recalibrate.window_days, default 28)."),
    model: str = typer.Option(None, "--model", help="The model to recalibrate (default: the champion)."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Register the challenger, do not promote it."),
    config: Path = typer.Option(None, "--config", help="Training YAML."),
    model_name: str = typer.Option(None, "--model-name", help="Registered model name (config: registered_model)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
) -> None:
    """Refit the champion's calibration on the latest closed labels and register it as a challenger (promoted when the gate passes)."""
    from features.dataset import DatasetError
    from training.cli import _console, _load_train_config, _progress, _setup_logging, fail
    from training.promote import PromotionError
    from training.env import configure_stores
    from training.report import dumps

    _setup_logging(verbose)
    if data is not None and not data.is_dir():
        fail(f"--data {data}: no such dataset directory")
    cfg = _load_train_config(config, registered_model=model_name)
    configure_stores()
    status, progress = _progress(_console(stderr=True), enabled=not verbose)
    try:
        with status:
            res = run_recalibration(cfg, data, window, model, not no_promote, progress)
    except (RecalibrationError, PromotionError, DatasetError, FileNotFoundError, ValueError) as err:
        fail(f"recalibrate: {err}")
    if as_json:
        typer.echo(dumps(res.to_dict()))
    else:
        w = res.window
        typer.echo(f"recalibrated {res.name} v{res.from_version} on {w['fit_rows']:,} closed labels from "
                   f"{w['start'][:10]}; judged on the newest {w['holdout_rows']:,}: registered v{res.version}")
        for label, by in res.new.items():
            for variant, m in by.items():
                o = res.old[label][variant]
                typer.echo(f"  {label}/{variant}: ECE {o['ece']:.4f} -> {m['ece']:.4f}, log loss {o['log_loss']:.4f} "
                           f"-> {m['log_loss']:.4f}, AUC {o['auc']:.4f} -> {m['auc']:.4f}")
        typer.echo(f"promoted v{res.version} to champion" if res.promoted else
                   "not promoted (--no-promote)" if res.passed else "")
    if not res.passed:
        fail(f"recalibrate: v{res.version} registered as challenger, not promoted: " + "; ".join(res.reasons))
