"""Writing the training table a data scientist can inspect (the `features` command)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.build import Horizons, TrainingTable, build_training_frame
from features.dataset import load_dataset


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """Write a frame as CSV or Parquet, chosen by the file extension."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: the output must end in .csv or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ", lineterminator="\n")


def export_training_table(data: Path, out: Path, until: str | None = None, horizons: Horizons = Horizons(),
                          timezone: str = "UTC") -> TrainingTable:
    """Load a dataset, build its training table and write it to ``out``."""
    dataset = load_dataset(data)
    table = build_training_frame(dataset, until=until, horizons=horizons, timezone=timezone)
    write_table(table.frame, out)
    return table
