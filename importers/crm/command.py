"""`activity-scorer import-crm` (placeholder)."""

import typer


def import_crm(source: str = typer.Argument(...)) -> None:
    """Convert CRM exports into a dataset (not yet implemented)."""
    raise typer.Exit(2)
