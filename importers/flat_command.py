"""`activity-scorer import-flat`: a flat one-row-per-activity export into a dataset.

Options mirror the mapping keys (``--time-column`` is ``time_column``); an option
given on the command line replaces the mapping key of the same name. See
docs/import-flat.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

logger = logging.getLogger(__name__)


def _missing_option(values: list[str]) -> dict[str, list[str]]:
    """``--missing VALUE`` (every column) or ``--missing COLUMN=VALUE`` into the mapping's form."""
    out: dict[str, list[str]] = {}
    for item in values:
        col, sep, value = item.partition("=")
        if not sep:
            col, value = "*", item
        out.setdefault(col.strip() or "*", []).append(value)
    return out


def import_flat(
    source: Path | None = typer.Argument(None, help="The flat file (CSV; delimiter detected unless given).", show_default=False),
    in_file: Path | None = typer.Option(None, "--in", help="The flat file (instead of SOURCE).", show_default=False),
    out: Path = typer.Option(..., "--out", help="Dataset directory to write."),
    mapping: str | None = typer.Option(
        None, "--mapping", help="Mapping YAML file, or the name of a bundled mapping (bank_marketing)."
    ),
    delimiter: str | None = typer.Option(None, "--delimiter", help="Field delimiter (',', ';', 'tab', ...)."),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding (default utf-8, BOM allowed)."),
    id_column: str | None = typer.Option(None, "--id-column", help="Column with unique activity ids (default: row numbers)."),
    time_column: str | None = typer.Option(None, "--time-column", help="Column with the activity time."),
    time_format: str | None = typer.Option(None, "--time-format", help="strptime format of --time-column (default ISO 8601)."),
    timezone: str | None = typer.Option(None, "--timezone", help="Zone of times written without one (default UTC)."),
    activity_type: str | None = typer.Option(None, "--type", help="Activity type for every row (call, email, ...)."),
    type_column: str | None = typer.Option(None, "--type-column", help="Column with the activity type."),
    deal_column: str | None = typer.Option(None, "--deal-column", help="Column with the deal key."),
    contact_column: str | None = typer.Option(None, "--contact-column", help="Column with the contact key."),
    account_column: str | None = typer.Option(None, "--account-column", help="Column with the account key."),
    rep_column: str | None = typer.Option(None, "--rep-column", help="Column with the rep key."),
    outcome_column: str | None = typer.Option(None, "--outcome-column", help="Column with the outcome."),
    positive: list[str] | None = typer.Option(None, "--positive", help="Outcome value that counts as positive (repeatable)."),
    negative: list[str] | None = typer.Option(
        None, "--negative", help="Outcome value that counts as not positive (repeatable; then any other value is an error)."
    ),
    outcome_name: str | None = typer.Option(None, "--outcome-name", help="Name of the outcome written (default converted)."),
    outcome_missing: str | None = typer.Option(
        None, "--outcome-missing", help="Rows with no outcome value: error (default), negative or drop."
    ),
    output_column: str | None = typer.Option(None, "--output-column", help="Column with an output (a reply, a connect)."),
    output_positive: list[str] | None = typer.Option(None, "--output-positive", help="Output value that counts (repeatable)."),
    output_response: str | None = typer.Option(None, "--output-response", help="Response written for it (default replied)."),
    missing: list[str] | None = typer.Option(
        None, "--missing", help="VALUE (every column) or COLUMN=VALUE that means missing (repeatable)."
    ),
    execution_time: list[str] | None = typer.Option(
        None, "--execution-time", help="Column known only after the activity; plan-time models skip it (repeatable)."
    ),
    contact_field: list[str] | None = typer.Option(None, "--contact-field", help="Column describing the contact (repeatable)."),
    account_field: list[str] | None = typer.Option(None, "--account-field", help="Column describing the account (repeatable)."),
    drop: list[str] | None = typer.Option(None, "--drop", help="Column not to import (repeatable)."),
    fmt: str = typer.Option("parquet", "--format", help="Table files to write: parquet or csv."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the dataset files in a non-empty --out."),
    report: Path | None = typer.Option(None, "--report", help="Also write the import report as JSON to this file."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Convert a flat export (one row per call or email, outcome in a column) into a dataset."""
    from importers.flat import FlatImportError, mapping_from_dict
    from importers.flat import import_flat as run_import
    from training.cli import configure_logging, fail

    if verbose:
        configure_logging(True)
    else:  # the report is the summary; logs only for warnings
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if (source is None) == (in_file is None):
        fail("give the flat file once: as SOURCE or with --in")
    path = source if source is not None else in_file
    assert path is not None
    if not path.is_file():
        fail(f"{path}: no such file")
    # No size check here: the import streams in bounded memory; only a file with a problem is read
    # whole (to name it), and that path checks the memory budget first (importers.flat._fits_in_memory).
    if fmt not in ("parquet", "csv"):
        fail(f"--format must be parquet or csv, not {fmt!r}")

    options: dict[str, Any] = {
        "delimiter": delimiter,
        "encoding": encoding,
        "id_column": id_column,
        "time_column": time_column,
        "time_format": time_format,
        "timezone": timezone,
        "type": activity_type,
        "type_column": type_column,
        "deal_column": deal_column,
        "contact_column": contact_column,
        "account_column": account_column,
        "rep_column": rep_column,
        "outcome_column": outcome_column,
        "positive": positive or None,
        "negative": negative or None,
        "outcome_name": outcome_name,
        "outcome_missing": outcome_missing,
        "output_column": output_column,
        "output_positive": output_positive or None,
        "output_response": output_response,
        "missing": _missing_option(missing) if missing else None,
        "execution_time": execution_time or None,
        "contact_fields": contact_field or None,
        "account_fields": account_field or None,
        "drop": drop or None,
    }
    given = {k: v for k, v in options.items() if v is not None}
    try:
        if mapping is not None:
            # an option replaces its key; a time column replaces a time rule, a type column a constant type
            overrides = dict(given)
            if "time_column" in given:
                overrides.setdefault("time_rule", None)
            if "type_column" in given:
                overrides.setdefault("type", None)
            if "type" in given:
                overrides.setdefault("type_column", None)
            flat_mapping = _load_with_overrides(mapping, overrides)
        else:
            flat_mapping = mapping_from_dict(given, origin="options")
        result = run_import(path, out, flat_mapping, fmt=fmt, overwrite=overwrite)
    except FlatImportError as err:
        fail(str(err))
        return
    except OSError as err:
        fail(f"{err.filename or out}: {err.strerror or err}")
        return
    for line in result.lines():
        typer.echo(line)
    if report is not None:
        report.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        typer.echo(f"report written to {report}")
    typer.secho(f"dataset written to {out}", fg=typer.colors.GREEN)


def _load_with_overrides(ref: str, overrides: dict[str, Any]):
    """Load a mapping file and replace keys (a None override removes the key)."""
    from importers.flat import mapping_from_dict, read_mapping_dict, resolve_mapping_path

    path = resolve_mapping_path(ref)
    data = read_mapping_dict(path)
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return mapping_from_dict(data, origin=f"mapping {path}")
