"""`activity-scorer simulate` (placeholder until the simulator lands)."""

import typer


def simulate(out: str = typer.Option(..., "--out")) -> None:
    """Write a synthetic dataset with ground truth (not yet implemented)."""
    raise typer.Exit(2)
