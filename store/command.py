"""``activity-scorer load --data DIR [--store URL]``: a dataset into the history store.

Registered by ``training/cli.py``. The dataset is read and checked as every command reads
one (``features.dataset.load_dataset``); the store then receives every table in one
transaction, so a failed load leaves the store as it was. Loading again replaces rows by key.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer

logger = logging.getLogger(__name__)


def load(
    data: Path = typer.Option(..., "--data", help="Dataset directory (data contract), e.g. the output of import-crm."),
    store_url: str = typer.Option(None, "--store", help="sqlite:///FILE, a file path, or postgresql://... "
                                                        "(default: ACTIVITY_SCORER_STORE, else store.db in the data home)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
) -> None:
    """Load a dataset into the history store the service reads (rows with a stored key are replaced)."""
    from features.dataset import DatasetError, load_dataset
    from store import StoreError, open_store, redact
    from training.cli import _setup_logging, fail

    _setup_logging(verbose)
    if not data.is_dir():
        fail(f"--data {data}: no such dataset directory")
    started = time.perf_counter()
    try:
        dataset = load_dataset(data)
    except (DatasetError, FileNotFoundError, ValueError) as err:
        fail(str(err))
    read_s = time.perf_counter() - started
    try:
        store = open_store(store_url)
    except StoreError as err:
        fail(f"load: {err}")
    t = time.perf_counter()
    try:
        counts = store.load_dataset(dataset, lambda msg: logger.info("%s", msg))
    except Exception as err:  # a DB error mid-load: the transaction was rolled back
        fail(f"load: store {redact(store.url)}: {type(err).__name__}: {err} (nothing was stored)")
    finally:
        store.close()
    write_s = time.perf_counter() - t
    n_act = counts.get("activities", 0)
    rate = n_act / write_s if write_s > 0 else float("inf")
    parts = ", ".join(f"{n:,} {name}" for name, n in counts.items())
    typer.echo(f"loaded {parts} into {redact(store.url)} in {write_s:.1f}s ({rate:,.0f} activities/s; "
               f"reading {data} took {read_s:.1f}s)")
