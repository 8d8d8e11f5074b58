"""``--engine local|dask [--scheduler ADDRESS]`` of ``features``, ``train`` and ``score`` (shared/API.md).

``training/cli.py`` owns the commands; with ``--engine dask`` they call the functions here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from engine.cluster import ClusterError, ClusterSettings, settings_from_env
from engine.partition import PartitionError

logger = logging.getLogger(__name__)

ENGINES = ("local", "dask")
# the engine's own errors are a RuntimeError (ClusterError) or a ValueError (PartitionError): the
# commands print them as one red line with their other errors
__all__ = ["ClusterError", "PartitionError", "check_engine", "features_on_dask"]


def check_engine(engine: str, scheduler: str | None) -> ClusterSettings | None:
    """The cluster settings for ``--engine dask``, None for ``local``.

    Raises:
        ValueError: an unknown engine, or ``--scheduler`` without ``--engine dask``.
        engine.cluster.ClusterError: a sizing variable does not parse.
    """
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "local":
        if scheduler:
            raise ValueError("--scheduler needs --engine dask")
        return None
    return settings_from_env(scheduler)


def features_on_dask(data: Path, out: Path, settings: ClusterSettings, home: Path, until: str | None,
                     horizons: Any, timezone: str) -> Any:
    """``activity-scorer features --engine dask``: the table written one partition at a time.

    Returns:
        ``engine.features.DistributedTable`` (stats, features, data end).
    """
    from engine.cluster import open_client
    from engine.features import build_distributed_table, write_distributed_table
    from features.dataset import load_dataset

    suffix = Path(out).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: the output must end in .csv or .parquet")
    dataset = load_dataset(Path(data))
    with open_client(settings, home) as client:
        table = build_distributed_table(client, dataset, until=pd.Timestamp(until) if until else None,
                                        horizons=horizons, timezone=timezone)
        write_distributed_table(client, table, Path(out))
    return table
