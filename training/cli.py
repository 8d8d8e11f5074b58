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


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
