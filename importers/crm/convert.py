"""One entry point for both CRMs: convert, write, validate, report."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from features import contract as c
from features.dataset import write_dataset
from importers.crm.common import Conversion
from importers.crm.config import CrmConfig, load_config
from importers.crm.errors import CrmConfigError
from importers.crm.report import ConversionReport

logger = logging.getLogger(__name__)

SOURCES = ("salesforce", "hubspot")


def convert_crm(
    source: str,
    in_dir: Path | str,
    *,
    as_of: pd.Timestamp | str | None = None,
    config: CrmConfig | Path | str | None = None,
    hubspot_shape: str = "auto",
) -> Conversion:
    """Convert a Salesforce or HubSpot export directory into contract tables (nothing is written).

    Args:
        source: ``salesforce`` or ``hubspot``.
        in_dir: the export directory.
        as_of: export time (default: inferred from the export, see the report).
        config: a :class:`CrmConfig`, a YAML path, or None for the defaults.
        hubspot_shape: ``api``, ``ui`` or ``auto`` (HubSpot only).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    if as_of is not None:
        as_of = parse_as_of(as_of)
    if not isinstance(config, CrmConfig):
        try:
            config = load_config(config)
        except CrmConfigError as err:
            report = ConversionReport(source, Path(in_dir), errors=[str(err)])
            return Conversion({}, report)
    if source == "salesforce":
        from importers.crm.salesforce import convert_salesforce

        return convert_salesforce(in_dir, as_of=as_of, config=config)
    from importers.crm.hubspot import convert_hubspot

    return convert_hubspot(in_dir, as_of=as_of, config=config, shape=hubspot_shape)


def import_crm_export(
    source: str,
    in_dir: Path | str,
    out_dir: Path | str,
    *,
    as_of: pd.Timestamp | str | None = None,
    config: CrmConfig | Path | str | None = None,
    fmt: str = "parquet",
    hubspot_shape: str = "auto",
    validate: bool = True,
) -> ConversionReport:
    """Convert an export, write the dataset to ``out_dir`` and validate it.

    Nothing is written when the conversion has errors (unmapped stages, unreadable
    values, ...). Contract table files left in ``out_dir`` by an earlier run that this
    run does not produce are removed, so the directory always holds one dataset.

    Returns:
        The report; ``report.exit_code`` is 0 on success and 1 on any error
        (conversion or validation).
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', not {fmt!r}")
    conversion = convert_crm(source, in_dir, as_of=as_of, config=config, hubspot_shape=hubspot_shape)
    report = conversion.report
    if report.errors:
        logger.info("import-crm %s: %d errors, nothing written", source, len(report.errors))
        return report
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in c.TABLES:
        if name not in conversion.tables:
            for suffix in (".csv", ".parquet"):
                stale = out / f"{name}{suffix}"
                if stale.exists():
                    stale.unlink()
    meta = {"source": f"import-crm {source}", "as_of": report.as_of.isoformat() if report.as_of is not None else None}
    write_dataset(conversion.tables, out, fmt, meta=meta)
    report.output_dir = out
    if validate:
        from features.validation import validate_dataset

        checked = validate_dataset(out, now=report.as_of + pd.Timedelta(days=1) if report.as_of is not None else None)
        report.validation_errors = [str(i) for i in checked.errors]
        report.validation_warnings = [str(i) for i in checked.warnings]
    logger.info("import-crm %s: wrote %s (%s)", source, out,
                ", ".join(f"{k}={v}" for k, v in report.tables.items()))
    return report


def parse_as_of(value: pd.Timestamp | str) -> pd.Timestamp:
    """``--as-of``: an ISO date or date-time; without a zone it is UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--as-of {value!r} is not an ISO 8601 date or date-time") from err
    if pd.isna(ts):
        raise ValueError(f"--as-of {value!r} is not an ISO 8601 date or date-time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
