"""``activity-scorer import-crm salesforce|hubspot --in DIR --out DIR``."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

logger = logging.getLogger(__name__)


def import_crm(
    source: str = typer.Argument(..., metavar="salesforce|hubspot", help="Which CRM the export comes from."),
    input_dir: Path = typer.Option(..., "--in", help="Export directory: Salesforce CSVs, or HubSpot API JSON / UI CSVs."),
    out: Path = typer.Option(..., "--out", help="Dataset directory to write (one file per contract table)."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Export time (ISO 8601; UTC without a zone). Later events are plans and are dropped. "
        "Default: the latest record time in the export."),
    config: Path | None = typer.Option(None, "--config", help="YAML with org-specific choices (see docs/crm.md)."),
    fmt: str = typer.Option("parquet", "--format", help="Output format: parquet or csv."),
    hubspot_export: str = typer.Option("auto", "--hubspot-export", help="HubSpot input shape: api, ui or auto."),
) -> None:
    """Turn Salesforce or HubSpot exports into a dataset in the data contract, and say what was done."""
    from rich.console import Console

    from importers.crm.convert import SOURCES, import_crm_export, parse_as_of
    from importers.crm.report import render_report
    from training.cli import fail

    source = source.strip().lower()
    if source not in SOURCES:
        fail(f"import-crm: the source must be salesforce or hubspot, not {source!r}", code=2)
    if fmt not in ("parquet", "csv"):
        fail(f"import-crm: --format must be parquet or csv, not {fmt!r}", code=2)
    if hubspot_export not in ("api", "ui", "auto"):
        fail(f"import-crm: --hubspot-export must be api, ui or auto, not {hubspot_export!r}", code=2)
    if not input_dir.is_dir():
        fail(f"import-crm: --in {input_dir}: no such directory", code=2)
    if config is not None and not config.is_file():
        fail(f"import-crm: --config {config}: no such file", code=2)
    try:
        when = parse_as_of(as_of) if as_of else None
    except ValueError as err:
        fail(f"import-crm: {err}", code=2)
    report = import_crm_export(source, input_dir, out, as_of=when, config=config, fmt=fmt,
                               hubspot_shape=hubspot_export)
    console = Console(soft_wrap=True)
    render_report(report, console)
    if not report.ok:
        if report.output_dir is None:
            fail(f"import-crm: {len(report.errors)} error(s); nothing written to {out}")
        fail(f"import-crm: the dataset in {out} does not validate ({len(report.validation_errors)} error line(s))")
    rows = report.tables.get("activities", 0)
    dropped = sum(report.dropped.values())
    typer.secho(f"import-crm {source}: wrote {rows} activities to {out} ({dropped} rows dropped, see above)",
                fg=typer.colors.GREEN)
