"""Refuse an input too large for memory before reading it (issue 12).

``validate`` reads whole files into pandas, and so does ``import-flat`` for the few files its
streaming pass cannot convert or word the error of (``importers.flat_stream``). A file some times larger than the
memory left would end in the kernel's out-of-memory killer (a crash with no message, and other
processes of a shared machine at risk). :func:`check_fits` estimates what reading needs from the
file sizes, with factors measured by ``benchmarks/bench_big_input.py``, and refuses with one clear
line when it exceeds the budget: ``ACTIVITY_SCORER_MEMORY_GB`` when set, else the memory available
now (``MemAvailable``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MEMORY_ENV = "ACTIVITY_SCORER_MEMORY_GB"
BASE_BYTES = 400 * 2**20  # the interpreter, pandas, pyarrow
# resident bytes per byte of input: measured 4.2 (validate) and 6.1 (import-flat) on 0.2 GB CSVs (docs/reliability.md), with a margin
FACTORS = {"validate": {".csv": 6.0, ".parquet": 20.0}, "import-flat": {".csv": 10.0, ".parquet": 30.0}}


class InputTooLarge(ValueError):
    """The input would need more memory than the budget (the message says how much and what to do)."""


def available_bytes() -> int:
    """The budget: ``ACTIVITY_SCORER_MEMORY_GB``, else ``MemAvailable`` (Linux), else free physical memory."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            raise InputTooLarge(f"{MEMORY_ENV}={raw!r}: expected a number of gigabytes") from None
        if gb <= 0:
            raise InputTooLarge(f"{MEMORY_ENV}={raw!r}: must be greater than 0")
        return int(gb * 2**30)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def estimate_bytes(paths: Iterable[Path], command: str) -> int:
    """Memory ``command`` needs to read these files (sizes times the measured factors, plus the base)."""
    factors = FACTORS[command]
    need = BASE_BYTES
    for path in paths:
        path = Path(path)
        if path.is_file():
            need += int(path.stat().st_size * factors.get(path.suffix.lower(), factors[".csv"]))
    return need


# what to split and what to run on each part, by command
_PARTS = {"import-flat": ("the file", "parts", "import-flat each to its own --out"),
          "validate": ("the dataset", "datasets", "validate each")}


def _against(budget: int) -> str:
    """The budget and where it comes from, as the refusals word it."""
    if os.environ.get(MEMORY_ENV, "").strip():
        return f"the budget of {_gb(budget)} ({MEMORY_ENV})"
    return f"the {_gb(budget)} available now ({MEMORY_ENV} sets a budget)"


def _gb(n: float) -> str:
    gb = n / 2**30
    return f"{gb:.1f} GB" if gb >= 1 else f"{gb:.2f} GB"


def _size(n: int) -> str:
    return _gb(n) if n >= 2**30 else f"{n / 2**20:.0f} MB"


def check_fits(paths: Iterable[Path], command: str) -> None:
    """Raise :class:`InputTooLarge` when reading ``paths`` would need more than the memory budget.

    The message names the input (the file, or the dataset's directory with its largest file) and
    its size, the estimated need against the budget and where the budget comes from, and how to
    proceed: more memory, or the input split by time into at least the number of parts that each
    fit. Nothing in the project reads an input larger than memory in pieces (``--engine dask``
    included: its client reads the whole dataset before partitioning it), so the message says so
    rather than pointing at a path that would fail the same way.
    """
    files = [Path(p) for p in paths if Path(p).is_file()]
    need = estimate_bytes(files, command)
    budget = available_bytes()
    if need <= budget:
        return
    sizes = {p: p.stat().st_size for p in files}
    biggest = max(files, key=sizes.__getitem__)
    if len(files) == 1:
        what = f"{biggest}: {_size(sizes[biggest])}"
    else:
        what = (f"{biggest.parent}: {_size(sum(sizes.values()))} in {len(files)} files (the largest, {biggest.name}, "
                f"{_size(sizes[biggest])})")
    against = _against(budget)
    whole, parts, each = _PARTS.get(command, ("the input", "parts", f"{command} each"))
    if budget > BASE_BYTES:
        n = math.ceil((need - BASE_BYTES) / (budget - BASE_BYTES))
        split = f", or split {whole} by time into at least {n} {parts} and {each}"
    else:
        split = f"; the budget is below the {_gb(BASE_BYTES)} the program itself needs"
    raise InputTooLarge(
        f"{what}; {command} would need about {_gb(need)} of memory, more than {against}. "
        f"To proceed: run where about {_gb(need)} is free{split}" + _NOT_IN_PIECES.get(command, ""))


_NOT_IN_PIECES = {  # why splitting is the way on, per command
    "validate": " (validate reads the whole dataset; --engine dask's client does too)",
    "import-flat": " (import-flat streams a file in bounded memory, and names a bad file's problem that way too; "
                   "it reads whole only the few files it cannot stream, as this one: docs/import-flat.md)",
}


# --- training --------------------------------------------------------------------------------
# resident bytes per activity while training, per engine (the process that runs `train`):
# - local: 1M simulated activities peaked at 4.1 GB (docs/training.md), 200k at 1.1 GB; rounded up.
# - dask: the client gathers each table and encodes it, the workers fit; 10M peaked at 18.83 GB
#   on the client (docs/scale.md, session 10, refits off; 17.73 GB through the first refit in
#   session 9), 1.9 KB an activity; rounded up. The local cluster's workers come on top, each
#   held to its memory limit (they spill to disk past it).
TRAIN_BYTES_PER_ACTIVITY = 5_000
DASK_TRAIN_BYTES_PER_ACTIVITY = 2_000
CSV_SAMPLE_BYTES = 1 << 20


def count_activities(data: Path, until: Any = None) -> tuple[int, bool]:
    """Activities of a dataset directory that training would use, and whether the count is an estimate.

    Parquet: exact, from the file's metadata (or, with ``until``, from its ``occurred_at`` column
    alone). CSV: estimated from the file size and the mean length of the first lines (``until``
    is not applied, so the estimate is high rather than low).
    """
    from features.dataset import table_path

    path = table_path(Path(data), "activities")
    if path is None:
        return 0, False
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = int(pq.ParquetFile(path).metadata.num_rows)
        except (pa.ArrowException, OSError):
            return 0, False  # not readable: loading the dataset says what is wrong with it
        if until is None:
            return rows, False
        import pandas as pd

        cut = pd.Timestamp(until)
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut
        try:
            when = pd.to_datetime(pq.read_table(path, columns=["occurred_at"]).column(0).to_pandas(), utc=True,
                                  errors="coerce")
        except (pa.ArrowException, OSError, KeyError, ValueError, TypeError):
            return rows, False  # every row, high rather than low
        return int((when < cut).sum()), False
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(CSV_SAMPLE_BYTES)
    lines = head.count(b"\n")
    if lines <= 1:
        return (1 if size else 0), True
    return max(int(size / (len(head) / lines)) - 1, 0), True


def check_train_fits(data: Path, until: Any = None, engine: str = "local") -> None:
    """Raise :class:`InputTooLarge` when training on ``data`` would need more than the memory budget.

    Training holds the whole training table and its encoded matrix in this process, with either
    engine (``--engine dask`` fits the boosters on the workers but gathers the table here), so
    the need grows with the activities used, plus the base: ``TRAIN_BYTES_PER_ACTIVITY`` each
    on the local engine, ``DASK_TRAIN_BYTES_PER_ACTIVITY`` on the Dask engine's client (which
    lets the table go once encoded and holds neither the boosters' bins nor their copies of the
    rows).
    """
    n, estimated = count_activities(data, until)
    per = DASK_TRAIN_BYTES_PER_ACTIVITY if engine == "dask" else TRAIN_BYTES_PER_ACTIVITY
    need = BASE_BYTES + n * per
    budget = available_bytes()
    if need <= budget:
        return
    against = _against(budget)
    count = f"about {n:,} activities (estimated from the CSV's size)" if estimated else f"{n:,} activities"
    since = " before --until" if until is not None else ""
    where = ("the Dask engine fits the boosters on its workers but gathers the training table on this process"
             if engine == "dask" else "training holds the whole training table in this process")
    fit = max(int((budget - BASE_BYTES) / per), 0)
    dask_need = BASE_BYTES + n * DASK_TRAIN_BYTES_PER_ACTIVITY
    other = (f"; or train with --engine dask, whose process needs about {_gb(dask_need)} "
             f"(~{DASK_TRAIN_BYTES_PER_ACTIVITY / 1000:.0f} KB an activity; its local workers come on top)"
             if engine != "dask" and dask_need <= budget else "")
    raise InputTooLarge(
        f"{data}: {count}{since}; training them would need about {_gb(need)} of memory "
        f"(~{per / 1000:.0f} KB each, measured), more than {against}. To proceed: run where "
        f"about {_gb(need)} is free, or train on a shorter history with --until (about {fit:,} activities fit); "
        f"{where} (features and score with --engine dask do not: docs/scale.md){other}.")


def release_unused_memory() -> None:
    """Hand memory this process has freed back to the system.

    Freeing a large table does not shrink the process by itself: pandas' strings live in
    Arrow's pool (mimalloc), which keeps freed pages for reuse, and glibc keeps freed heap
    pages below its trim threshold. Both hold on to them while the next step (the boosters'
    fits, say) needs the room. Measured at 1M activities, just after ``train`` let its table
    go: 2.09 GB resident, 1.98 after Arrow's release, 1.62 after glibc's trim. Best effort:
    where there is no glibc (``malloc_trim``), only Arrow's pool is released.
    """
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing more to do
        pass
