"""What a conversion did: rows read, kept and dropped by reason, stages, warnings, errors."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class InputCounts:
    """Counts for one input file (or one kind of record within it).

    ``dropped`` counts rows left out, by reason; ``notes`` counts rows kept with a
    remark (e.g. ``occurred_at from ActivityDate (back-dated)``).
    """

    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] += int(n)

    def note(self, remark: str, n: int = 1) -> None:
        if n:
            self.notes[remark] += int(n)

    def to_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "dropped": dict(self.dropped), "notes": dict(self.notes)}


@dataclass
class StageMapping:
    """How one stage name of the export was mapped."""

    stage: str
    order: int
    closed: bool
    won: bool
    rows: int = 0
    via: str = "stage table"  # or "stage_map"


@dataclass
class ConversionReport:
    """The account of one ``import-crm`` run, for printing and for tests."""

    source: str
    input_dir: Path
    as_of: pd.Timestamp | None = None
    as_of_inferred: bool = False
    inputs: dict[str, InputCounts] = field(default_factory=dict)
    stages: dict[str, StageMapping] = field(default_factory=dict)
    unmapped_stages: dict[str, list[str]] = field(default_factory=dict)  # file -> names
    tables: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    output_dir: Path | None = None
    validation_errors: list[str] = field(default_factory=list)
    validation_warnings: list[str] = field(default_factory=list)
    config_source: str = "defaults"

    def input(self, name: str) -> InputCounts:
        return self.inputs.setdefault(name, InputCounts())

    @property
    def ok(self) -> bool:
        return not self.errors and not self.validation_errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def dropped(self) -> Counter:
        """Dropped rows by reason, over all inputs."""
        total: Counter = Counter()
        for counts in self.inputs.values():
            total.update(counts.dropped)
        return total

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "input_dir": str(self.input_dir),
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "as_of_inferred": self.as_of_inferred,
            "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
            "stages": {
                k: {"order": v.order, "closed": v.closed, "won": v.won, "rows": v.rows, "via": v.via}
                for k, v in self.stages.items()
            },
            "unmapped_stages": self.unmapped_stages,
            "tables": self.tables,
            "warnings": self.warnings,
            "errors": self.errors,
            "validation_errors": self.validation_errors,
            "output_dir": None if self.output_dir is None else str(self.output_dir),
            "config": self.config_source,
        }


def render_report(report: ConversionReport, console) -> None:
    """Print the report with rich (used by the command)."""
    from rich.table import Table

    as_of = "-" if report.as_of is None else report.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    how = " (inferred: latest record time in the export; pass --as-of to set it)" if report.as_of_inferred else ""
    console.print(f"[bold]{report.source}[/bold] export in {report.input_dir}  as of {as_of}{how}  config: {report.config_source}")

    rows = Table(title="Rows read")
    for col in ("input", "read", "kept", "dropped"):
        rows.add_column(col, justify="left" if col == "input" else "right")
    for name, counts in report.inputs.items():
        rows.add_row(name, str(counts.read), str(counts.kept), str(sum(counts.dropped.values())))
    console.print(rows)
    for name, counts in report.inputs.items():
        for reason, n in counts.dropped.most_common():
            console.print(f"  {name}: dropped {n} - {reason}", highlight=False)
        for remark, n in counts.notes.most_common():
            console.print(f"  {name}: {n} - {remark}", highlight=False, style="dim")

    if report.stages:
        stages = Table(title="Stages mapped")
        for col in ("stage", "order", "closed", "won", "rows", "via"):
            stages.add_column(col)
        for name, m in sorted(report.stages.items(), key=lambda kv: (kv[1].order == 0, kv[1].order, kv[0])):
            stages.add_row(name, str(m.order), "yes" if m.closed else "", "yes" if m.won else "", str(m.rows), m.via)
        console.print(stages)

    if report.tables:
        tables = Table(title="Tables written" if report.output_dir else "Tables built (not written)")
        tables.add_column("table")
        tables.add_column("rows", justify="right")
        for name, n in report.tables.items():
            tables.add_row(name, str(n))
        console.print(tables)

    for message in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
    for message in report.validation_warnings:
        console.print(f"[yellow]validation warning:[/yellow] {message}", highlight=False)
    for message in [*report.errors, *report.validation_errors]:
        console.print(f"[red]error:[/red] {message}", highlight=False)
