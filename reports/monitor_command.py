"""``activity-scorer monitor``: the command, the inputs it loads and its HTML page (registered in training/cli.py)."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

logger = logging.getLogger(__name__)


def write_monitor(data: Path, since, out: Path, *, model: str | None = None, json_out: Path | None = None,  # noqa: ANN001
                  predictions: Path | None = None, cfg=None, progress=None) -> dict[str, Any]:  # noqa: ANN001
    """Load the model (default: the champion) and the data, build the monitor document, write HTML (and JSON).

    Raises:
        reports.monitor.MonitorError, training.tracking.TrackingError, features.dataset.DatasetError.
    """
    import pandas as pd

    from reports.monitor import monitor_frame
    from serving.prediction_log import default_directory, read_predictions
    from training import data as data_mod
    from training import tracking
    from training.config import load_config
    from training.promote import config_for_bundle

    cfg = cfg or load_config()
    progress = progress or (lambda _: None)
    t0 = time.perf_counter()
    uri = model or tracking.default_model_uri(cfg.registered_model)
    with tempfile.TemporaryDirectory(prefix="activity-scorer-monitor-") as tmp:
        progress(f"loading model {uri}")
        bundle, fetched = tracking.load_bundle(uri, Path(tmp))
    bcfg = config_for_bundle(cfg, bundle)
    progress(f"building features and labels from {data}")
    loaded = data_mod.load_table(Path(data), bcfg, None)
    end = pd.Timestamp(loaded.table.data_end)
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    where = predictions if predictions is not None else default_directory()
    served = read_predictions(where, since=since) if Path(where).is_dir() else None
    progress("measuring drift and realized quality")
    from training.recalibrate import settled_frame

    doc = monitor_frame(bundle, settled_frame(loaded, bundle, bcfg, end), since, cfg, end, served)
    doc["model"]["label"] = f"{fetched.name} v{fetched.version}" if fetched.version else str(uri)
    doc["data"] = str(Path(data).resolve())
    doc["prediction_log"] = str(where) if served is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(doc), encoding="utf-8")
    if json_out is not None:
        from training.report import dumps

        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(dumps(doc) + "\n", encoding="utf-8")
    doc["seconds_total"] = round(time.perf_counter() - t0, 2)
    return doc


def render(doc: dict[str, Any]) -> str:
    """The monitor document as one self-contained HTML page (inline SVG, no scripts, works offline)."""
    from reports import html as h
    from reports import plots

    w, r, s = doc["window"], doc["realized"], doc["score"]
    verdict = doc["verdict"]
    head = [f"{doc['model'].get('label') or doc['model']['name']} on {doc.get('data', '')}",
            f"recent window {w['since'][:10]} .. {w['data_end'][:10]} ({w['recent_rows']:,} activities, "
            f"{w['closed_labels']:,} closed labels) against the training window {w['reference_start'][:10]} .. "
            f"{w['reference_end'][:10]} ({w['reference_rows']:,})"]
    kind = {"keep": "info", "recalibrate": "wait", "retrain": "warn"}[verdict]
    summary = h.section(
        "verdict", f"Verdict: {verdict}",
        h.note(f"{verdict.upper()}: " + "; ".join(doc["reasons"]), kind),
        h.cards([("realized AUC", h.number(r.get("auc"), 3), f"test {h.number(r.get('test_auc'), 3)}"),
                 ("realized ECE", h.number(r.get("ece"), 3), f"test {h.number(r.get('test_ece'), 3)}"),
                 ("score PSI", h.number(s["psi"], 3), f"mean p {s['mean_reference']:.3f} -> {s['mean_recent']:.3f}"),
                 ("features shifted", str(sum(f["status"] == "shifted" for f in doc["features"])),
                  f"of {len(doc['features'])}")]),
        h.bullets(doc["notes"]) if doc["notes"] else "",
        h.paragraph("Thresholds (config monitor): " + ", ".join(f"{k} {v}" for k, v in doc["thresholds"].items())),
    )
    cols = [h.Column("feature", "feature", str, True), h.Column("status", "status", str, True),
            h.Column("psi", "PSI", lambda v: h.number(v, 3)), h.Column("test", "test", str, True),
            h.Column("p_value", "p-value", lambda v: f"{v:.2g}"),
            h.Column("missing_ref", "missing (training)", h.percent),
            h.Column("missing_recent", "missing (recent)", h.percent)]
    features = h.section("features", "Feature drift", h.table(cols, doc["features"]),
                         intro="Population stability index against the training window (quantile bins of the "
                               "training rows; categories: the levels the model knows) and a two-sample test.")
    weeks = doc["weeks"]
    labels = [x["week"] for x in weeks]
    quality = h.section(
        "quality", "Realized quality on closed labels",
        h.plots(h.figure(plots.lines(labels, {"AUC": [x["auc"] for x in weeks]}, "AUC by week", "AUC"),
                         "Weeks whose labels have not closed yet have no AUC."),
                h.figure(plots.lines(labels, {"observed rate": [x["base_rate"] for x in weeks],
                                              "mean p_outcome": [x["mean_p_all"] for x in weeks]},
                                     "observed vs predicted by week", "share"), "Predicted on every activity, "
                                                                             "observed on the closed ones."),
                h.figure(plots.calibration(r["calibration"], "calibration over the window"),
                         "Observed share against mean predicted probability, equal-count bins.")),
        h.table([h.Column("week", "week", str, True), h.Column("activities", "activities", h.count),
                 h.Column("closed", "closed labels", h.count), h.Column("base_rate", "observed", h.percent),
                 h.Column("mean_p", "mean p (closed)", h.percent), h.Column("auc", "AUC", lambda v: h.number(v, 3)),
                 h.Column("ece", "ECE", lambda v: h.number(v, 3))], weeks),
    )
    unseen = doc["unseen"]
    extra = h.section(
        "unseen", "Unseen values and served predictions",
        h.paragraph("Category values the model never saw (scored as unseen): "
                    + (", ".join(f"{k} {v:,}" for k, v in unseen.items()) if unseen else "none")),
        h.paragraph(_served_text(doc.get("served"), doc.get("prediction_log"))),
    )
    return h.page("Model monitor", head, [summary, features, quality, extra],
                  footer="activity-scorer monitor; figures as JSON with --json")


def _served_text(served: dict | None, where: str | None) -> str:
    if served is None:
        return "No prediction log was found: nothing about served predictions."
    if not served.get("records"):
        return f"The prediction log ({where}) has no /score record in the window."
    parts = [f"{served['records']:,} /score items served in the window by version(s) {', '.join(served['versions'])}"]
    if "psi_vs_reference" in served:
        parts.append(f"served p_outcome PSI against the training window {served['psi_vs_reference']:.3f}")
    if "realized_auc" in served:
        parts.append(f"realized AUC of what was served {served['realized_auc']:.3f} on {served['closed']:,} closed "
                     "labels")
    return "; ".join(parts) + f" (log: {where})."


def monitor(
    data: Path = typer.Option(..., "--data", help="Dataset directory (data contract) with the recent activities."),
    since: str = typer.Option(..., "--since", help="Start of the recent window (ISO 8601)."),
    out: Path = typer.Option(..., "--out", help="The report: one self-contained .html file."),
    model: str = typer.Option(None, "--model", help="models:/NAME@ALIAS, models:/NAME/V, runs:/RUN_ID or a bundle "
                                                    "dir (default: the champion)."),
    json_out: Path = typer.Option(None, "--json", help="Also write every figure and the verdict as JSON here."),
    predictions: Path = typer.Option(None, "--predictions", help="Prediction log directory (default: the data "
                                                                  "home's predictions/, when present)."),
    config: Path = typer.Option(None, "--config", help="Training YAML (registered model name, monitor thresholds)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
) -> None:
    """Drift and realized quality of the champion on recent data, and whether to keep, recalibrate or retrain."""
    from features.dataset import DatasetError
    from reports.monitor import MonitorError
    from training.cli import _console, _load_train_config, _parse_date_option, _progress, _setup_logging, fail
    from training.env import configure_stores
    from training.tracking import TrackingError

    _setup_logging(verbose)
    if out.suffix.lower() not in (".html", ".htm"):
        fail(f"--out {out}: the monitor report is an HTML page; the file name must end in .html")
    if json_out is not None and json_out.suffix.lower() != ".json":
        fail(f"--json {json_out}: the file name must end in .json")
    if not data.is_dir():
        fail(f"--data {data}: no such dataset directory")
    if predictions is not None and not predictions.is_dir():
        fail(f"--predictions {predictions}: no such directory")
    since_ts = _parse_date_option(since, "--since")
    cfg = _load_train_config(config)
    configure_stores()
    status, progress = _progress(_console(stderr=True), enabled=not verbose)
    try:
        with status:
            doc = write_monitor(data, since_ts, out, model=model, json_out=json_out, predictions=predictions, cfg=cfg,
                                progress=progress)
    except (MonitorError, TrackingError, DatasetError, FileNotFoundError, ValueError) as err:
        fail(f"monitor: {err}")
    except OSError as err:
        fail(f"monitor: cannot write {out}: {err.strerror or err}")
    typer.echo(f"verdict: {doc['verdict']} ({'; '.join(doc['reasons'])})")
    typer.echo(f"wrote {out.resolve()}" + (f" and {json_out.resolve()}" if json_out else "")
               + f" in {doc['seconds_total']:.1f}s")
