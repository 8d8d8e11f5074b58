"""``activity-scorer report``: the manager report "activity vs accomplishment" (registered in training/cli.py)."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import typer

logger = logging.getLogger(__name__)


def write_report(data: Path, out: Path, *, since=None, until=None, model: str | None = None,  # noqa: ANN001
                 json_out: Path | None = None, cfg=None, progress=None) -> dict:  # noqa: ANN001
    """Build the report for ``data`` with the champion (or ``model``) and write the HTML (and JSON) file.

    Returns:
        the report document (what the JSON file holds).

    Raises:
        reports.report.ReportError, reports.effects_source.EffectSourceError,
        training.tracking.TrackingError, features.dataset.DatasetError: with a message for the user.
    """
    import json

    from reports.report import build_report, load_inputs
    from reports.report_page import render
    from training import tracking
    from training.config import load_config

    cfg = cfg or load_config()
    progress = progress or (lambda _: None)
    t0 = time.perf_counter()
    uri = model or tracking.default_model_uri(cfg.registered_model)
    with tempfile.TemporaryDirectory(prefix="activity-scorer-report-") as tmp:
        progress(f"loading model {uri}")
        bundle, fetched = tracking.load_bundle(uri, Path(tmp))
        label = f"{fetched.name} v{fetched.version}" if fetched.version else str(uri)
        info = {"label": label, "uri": str(uri), "name": fetched.name, "version": fetched.version,
                "trained_at": bundle.manifest.trained_at}
        inputs = load_inputs(Path(data), bundle, fetched.path, info, cfg, progress)
        doc = build_report(inputs, since, until, progress)
    page = render(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    doc["seconds_total"] = round(time.perf_counter() - t0, 2)
    return doc


def report(
    data: Path = typer.Option(..., "--data", help="Dataset directory (data contract)."),
    out: Path = typer.Option(..., "--out", help="The report: one self-contained .html file (opens offline)."),
    since: str = typer.Option(None, "--since", help="First day of the window (ISO 8601; default: 13 weeks before "
                                                    "--until)."),
    until: str = typer.Option(None, "--until", help="End of the window, excluded (ISO 8601; default: just after the "
                                                    "last activity)."),
    model: str = typer.Option(None, "--model", help="models:/NAME@ALIAS, models:/NAME/V, runs:/RUN_ID or a bundle "
                                                    "dir (default: the champion)."),
    json_out: Path = typer.Option(None, "--json", help="Also write every figure as JSON to this file."),
    config: Path = typer.Option(None, "--config", help="Training YAML (for the registered model name)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
) -> None:
    """The manager report "activity vs accomplishment": volume, outputs, outcomes and estimated effects per rep, type and week."""
    from features.dataset import DatasetError
    from reports.effects_source import EffectSourceError
    from reports.report import ReportError
    from training.cli import _console, _load_train_config, _parse_date_option, _progress, _setup_logging, fail
    from training.env import configure_stores
    from training.tracking import TrackingError

    _setup_logging(verbose)
    if out.suffix.lower() not in (".html", ".htm"):
        fail(f"--out {out}: the report is an HTML page; the file name must end in .html")
    if json_out is not None and json_out.suffix.lower() != ".json":
        fail(f"--json {json_out}: the file name must end in .json")
    if not data.is_dir():
        fail(f"--data {data}: no such dataset directory")
    since_ts = _parse_date_option(since, "--since")
    until_ts = _parse_date_option(until, "--until")
    cfg = _load_train_config(config)
    configure_stores()
    status, progress = _progress(_console(stderr=True), enabled=not verbose)
    try:
        with status:
            doc = write_report(data, out, since=since_ts, until=until_ts, model=model, json_out=json_out, cfg=cfg,
                               progress=progress)
    except (ReportError, EffectSourceError, TrackingError, DatasetError, FileNotFoundError, ValueError) as err:
        fail(f"report: {err}")
    except OSError as err:
        fail(f"report: cannot write {out}: {err.strerror or err}")
    t, w = doc["totals"], doc["window"]
    effects = ("with effect estimates" if doc["effects"]["available"]
               else "without effect estimates (the model has no effects model; the page says which figures wait)")
    typer.echo(f"wrote {out.resolve()}: {t['activities']:,} activities of {t['reps_active']:,} reps, "
               f"{w['since'][:10]} to {w['until'][:10]}, {doc['model']['label']}, {effects} "
               f"in {doc['seconds_total']:.1f}s")
    if json_out is not None:
        typer.echo(f"wrote {json_out.resolve()}: the same figures as JSON")
