"""The ``activity-scorer`` command line (one Typer app).

Each command reads options, calls a library function, prints a short summary and
sets the exit code. The logic lives in the library so tests and notebooks call
the same functions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from training.env import apply_privacy_defaults

apply_privacy_defaults()

app = typer.Typer(
    name="activity-scorer",
    help="Learn which sales activities advance customer outcomes; score and rank them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def fail(message: str, code: int = 1) -> None:
    """Print one clear line to stderr and exit non-zero (never a traceback)."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _register_commands() -> None:
    from importers.cli import register as register_importers
    from simulator.command import simulate

    app.command("simulate")(simulate)
    register_importers(app)


@app.command()
def validate(data: Path = typer.Option(..., "--data", help="Dataset directory (CSV or Parquet per table).")) -> None:
    """Check a dataset against the data contract and print a summary or the errors."""
    from features.validation import run_validate

    raise typer.Exit(run_validate(data))


@app.command()
def features(
    data: Path = typer.Option(..., "--data", help="Dataset directory."),
    out: Path = typer.Option(..., "--out", help="Output file: .csv or .parquet."),
    until: str = typer.Option(None, "--until", help="Use only what was known before this date (ISO 8601)."),
    outcome_days: int = typer.Option(14, help="Outcome label horizon in days."),
    output_days: int = typer.Option(7, help="Output and negative label horizon in days."),
    timezone: str = typer.Option("UTC", help="Time zone for hour and weekday features (IANA name)."),
) -> None:
    """Write the training table: ids, occurred_at, features and labels, one row per activity."""
    import pandas as pd

    from features.build import Horizons
    from features.dataset import DatasetError
    from features.table import export_training_table

    if until is not None:
        try:
            pd.Timestamp(until)
        except ValueError:
            fail(f"--until: cannot parse {until!r} as a date (use ISO 8601, e.g. 2026-03-01)")
    try:
        table = export_training_table(data, out, until, Horizons(outcome_days, output_days), timezone)
    except (DatasetError, FileNotFoundError, ValueError) as err:
        fail(str(err))
    n = len(table.frame)
    labelled = table.stats["outcome_labelled"]
    typer.echo(
        f"wrote {out}: {n:,} activities x {len(table.features)} features; outcome labelled for {labelled:,} "
        f"(censored or without a deal: {n - labelled:,}); data end {table.data_end.isoformat()}"
    )
    if table.stats["logged_after_outcome"]:
        typer.echo(f"{table.stats['logged_after_outcome']:,} activities were logged after the outcome that "
                   f"followed them (column logged_after_outcome); training leaves them out of the outcome model")


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
