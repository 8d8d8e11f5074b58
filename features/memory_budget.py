"""Refuse an input too large for memory before reading it (issue 12).

``validate`` and ``import-flat`` read whole files into pandas. A file some times larger than the
memory left would end in the kernel's out-of-memory killer (a crash with no message, and other
processes of a shared machine at risk). :func:`check_fits` estimates what reading needs from the
file sizes, with factors measured by ``benchmarks/bench_big_input.py``, and refuses with one clear
line when it exceeds the budget: ``ACTIVITY_SCORER_MEMORY_GB`` when set, else the memory available
now (``MemAvailable``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

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


def check_fits(paths: Iterable[Path], command: str) -> None:
    """Raise :class:`InputTooLarge` when reading ``paths`` would need more than the memory budget."""
    paths = [Path(p) for p in paths]
    need = estimate_bytes(paths, command)
    budget = available_bytes()
    if need > budget:
        biggest = max((p for p in paths if p.is_file()), key=lambda p: p.stat().st_size)
        raise InputTooLarge(
            f"{biggest}: {biggest.stat().st_size / 2**30:.1f} GB; {command} would need about {need / 2**30:.1f} GB of "
            f"memory and {budget / 2**30:.1f} GB is available ({MEMORY_ENV} sets the budget): split the file by time "
            f"and {command} the parts")
