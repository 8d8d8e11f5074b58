"""Registers the import commands on the main app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from importers.crm.command import import_crm
    from importers.flat_command import import_flat

    app.command("import-crm")(import_crm)
    app.command("import-flat")(import_flat)
