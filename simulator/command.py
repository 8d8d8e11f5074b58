"""`activity-scorer simulate`: write a synthetic CRM history with its ground truth."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import typer

from simulator.generate import write_simulation
from simulator.params import DEFAULT_ACTIVITIES, OracleSettings
from simulator.worlds import DEFAULT_WORLD, WorldError, load_world, simulate_world


def simulate(
    out: Path = typer.Option(..., "--out", help="Dataset directory to write (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same files."),
    activities: int = typer.Option(DEFAULT_ACTIVITIES, "--activities", min=1,
                                   help="How many activities (at most; whole accounts are kept)."),
    fmt: str = typer.Option("parquet", "--format", help="Table file format: parquet or csv."),
    start: str = typer.Option("2025-01-01", "--start", help="First day of the history (UTC)."),
    days: int = typer.Option(365, "--days", min=60, help="Length of the history in days."),
    oracle_share: float = typer.Option(
        0.2, "--oracle-share", min=0.0, max=1.0,
        help="Share of activities that get the ex-ante label probability (Monte-Carlo continuations)."),
    oracle_rollouts: int = typer.Option(8, "--oracle-rollouts", min=1, help="Continuations per sampled activity."),
    world: str = typer.Option(DEFAULT_WORLD, "--world",
                              help="A shipped world's name (default, same_day, slow_records, unseen, ...) or "
                                   "the path of a world file (YAML); see docs/worlds.md."),
) -> None:
    """Write a synthetic dataset in the data contract plus its ground truth (ground_truth.*)."""
    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter("must be 'parquet' or 'csv'", param_hint="--format")
    try:
        date.fromisoformat(start)
    except ValueError as err:
        raise typer.BadParameter(f"not a date (YYYY-MM-DD): {start!r}", param_hint="--start") from err
    try:
        spec = load_world(world)
    except WorldError as err:
        typer.secho(f"--world: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    began = time.perf_counter()
    sim = simulate_world(spec, activities, seed, oracle=OracleSettings(share=oracle_share, rollouts=oracle_rollouts),
                         start=start, days=days)
    write_simulation(sim, out, fmt)
    elapsed = time.perf_counter() - began
    gt = sim.ground_truth
    deals = sim.deals_truth["status"].value_counts()
    typer.echo(
        f"wrote {len(gt):,} activities of world {spec.name!r} on {len(sim.deals_truth):,} deals ({deals.get('won', 0):,} won, "
        f"{deals.get('lost', 0):,} lost) to {out} in {elapsed:.1f}s; "
        f"outcome {gt['label_outcome'].mean():.1%}, output {gt['label_output'].mean():.1%}, "
        f"negative {gt['label_negative'].mean():.1%} of labelled activities"
    )
