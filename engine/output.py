"""Write a table that arrives partition by partition to one .csv or .parquet file, atomically.

Memory stays at one partition: each frame is appended as it arrives, to ``<out>.partial``,
which replaces ``out`` only when every frame is written (a failure leaves ``out`` as it was).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd


def write_frames(frames: Iterable[pd.DataFrame], out: Path, csv_options: dict[str, Any] | None = None) -> None:
    """Append ``frames`` in order to ``out`` (.csv with a header once, or .parquet with the first frame's schema).

    Args:
        csv_options: extra ``DataFrame.to_csv`` arguments (e.g. ``date_format``, ``float_format``).

    Raises:
        ValueError: ``out`` does not end in .csv or .parquet.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: the output must end in .csv or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    writer = None
    try:
        first = True
        for frame in frames:
            if suffix == ".parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                batch = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, batch.schema)
                writer.write_table(batch.cast(writer.schema))
            else:
                frame.to_csv(tmp, mode="w" if first else "a", header=first, index=False, lineterminator="\n",
                             **(csv_options or {}))
            first = False
        if writer is not None:
            writer.close()
            writer = None
        tmp.replace(out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
