"""The Dask cluster the engine runs on: a scheduler given by address, or a local one on loopback."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
# pandas' strings live in Arrow buffers; Arrow's default pool (mimalloc) keeps freed pages, which
# Dask counts as unmanaged memory and no spilling can free: the system allocator returns them
# (distributed already sets MALLOC_TRIM_THRESHOLD_ for its workers)
WORKER_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system"}
DEFAULT_MEMORY_LIMIT = "6GiB"  # per worker; beyond ~70% of it a worker spills to disk
SPILL_DIR = "dask"  # inside the data home
CLOSE_TIMEOUT_S = 60  # per attempt at closing a local cluster; a close that takes longer has hung


class ClusterError(RuntimeError):
    """The scheduler cannot be reached, or the local cluster cannot start."""


@dataclass(frozen=True)
class ClusterSettings:
    """Where the engine runs.

    Attributes:
        scheduler: ``tcp://host:port`` of a running scheduler; None starts a local cluster.
        workers: local cluster only: worker processes (one thread each).
        memory_limit: local cluster only: per worker (Dask's spelling, e.g. ``"6GiB"``).
        spill_dir: local cluster only: where workers spill (default: ``<data home>/dask``).
    """

    scheduler: str | None = None
    workers: int = DEFAULT_WORKERS
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    spill_dir: Path | None = None


def settings_from_env(scheduler: str | None = None) -> ClusterSettings:
    """Settings from the command line and the environment.

    ``ACTIVITY_SCORER_DASK_WORKERS`` and ``ACTIVITY_SCORER_DASK_MEMORY`` size the local cluster.

    Raises:
        ClusterError: a variable does not parse.
    """
    raw = os.environ.get("ACTIVITY_SCORER_DASK_WORKERS", str(DEFAULT_WORKERS))
    try:
        workers = int(raw)
    except ValueError:
        raise ClusterError(f"ACTIVITY_SCORER_DASK_WORKERS={raw!r}: expected a whole number of workers") from None
    if workers < 1:
        raise ClusterError(f"ACTIVITY_SCORER_DASK_WORKERS={workers}: at least one worker is needed")
    memory = os.environ.get("ACTIVITY_SCORER_DASK_MEMORY", DEFAULT_MEMORY_LIMIT)
    try:
        from dask.utils import parse_bytes

        parse_bytes(memory)
    except (ValueError, TypeError):
        raise ClusterError(f"ACTIVITY_SCORER_DASK_MEMORY={memory!r}: expected a size such as 6GiB") from None
    return ClusterSettings(scheduler=scheduler or None, workers=workers, memory_limit=memory)


@contextlib.contextmanager
def _worker_deaths(settings: ClusterSettings) -> Iterator[None]:
    """A task that killed its workers (usually their memory limit) becomes one clear ClusterError."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    where = (f"the workers of {settings.scheduler}" if settings.scheduler else
             f"a local worker ({settings.memory_limit} each; ACTIVITY_SCORER_DASK_MEMORY raises it)")
    try:
        yield
    except KilledWorker as err:
        raise ClusterError(f"a Dask task killed {where} repeatedly and was given up: {err.args[0] if err.args else err}"
                           ) from None
    except CancelledError as err:  # distributed's FutureCancelledError: a worker holding sent data was lost
        raise ClusterError(f"a Dask worker was lost (usually {where} went over its memory limit) and with it "
                           f"partition data sent from here, which cannot be recomputed; the output was left as it was "
                           f"({err.args[0] if err.args else type(err).__name__})") from None


@contextlib.contextmanager
def open_client(settings: ClusterSettings, home: Path) -> Iterator[object]:
    """A ``distributed.Client`` on the scheduler of ``settings``, or on a new local cluster.

    The local cluster listens on 127.0.0.1 only (its HTTP endpoints on a free port), runs one thread per
    worker process (LightGBM's Dask training needs one LightGBM per process) and spills to
    ``<home>/dask``; its workers print to stderr only and report LightGBM's unspillable port
    sockets in one line (:mod:`engine.worker_logs`). It is closed on exit; a remote scheduler is
    left running, its workers untouched.

    Raises:
        ClusterError: the scheduler cannot be reached or the cluster cannot start.
    """
    from distributed import Client, LocalCluster

    from engine.worker_logs import LocalWorkerOutput

    if settings.scheduler:
        try:
            client = Client(settings.scheduler, timeout="10s")
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"--scheduler {settings.scheduler}: cannot reach the Dask scheduler ({err})") from None
        try:
            logger.info("Dask scheduler %s, %d workers", settings.scheduler, len(client.scheduler_info()["workers"]))
            with _worker_deaths(settings):
                yield client
        finally:
            client.close()
        return
    spill = Path(settings.spill_dir or Path(home) / SPILL_DIR)
    spill.mkdir(parents=True, exist_ok=True)
    try:
        cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", memory_limit=settings.memory_limit,
                               local_directory=str(spill), silence_logs=logging.WARNING, env=WORKER_ENV)
    except (OSError, RuntimeError, TimeoutError) as err:
        raise ClusterError(f"cannot start a local Dask cluster: {err}") from None
    try:
        client = Client(cluster)
        try:
            # every worker, restarted ones too: stdout to stderr, LightGBM's port sockets in one line
            client.register_plugin(LocalWorkerOutput())
            logger.info("local Dask cluster %s: %d workers x %s, spilling to %s", cluster.scheduler_address,
                        settings.workers, settings.memory_limit, spill)
            with _worker_deaths(settings):
                yield client
        finally:
            client.close()
    finally:
        _close_local(cluster)


def _close_local(cluster) -> None:  # noqa: ANN001
    """Close our local cluster; a failure while closing never hides the error that ended the work.

    distributed's nanny may be restarting a worker a task killed when the close arrives, and its
    close then fails with an internal assertion ("can only join a started process"); once the
    restart is done a second close succeeds.
    """
    import time

    for attempt in (1, 2):
        try:
            cluster.close(timeout=CLOSE_TIMEOUT_S)
            return
        except (AssertionError, RuntimeError, OSError, TimeoutError) as err:
            logger.warning("closing the local Dask cluster, attempt %d: %s", attempt, err or type(err).__name__)
            time.sleep(1.0)
    # seen in a test run: after a worker was killed, close() waited forever on the nanny's restart;
    # the worker processes are ours, so they are ended rather than left to hang the command
    _kill_workers(cluster)


def _kill_workers(cluster) -> None:  # noqa: ANN001
    """Kill the worker processes of a local cluster whose close did not finish (and their children)."""
    import psutil

    pids = []
    for worker in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(worker, "pid", None)
        if pid:
            pids.append(int(pid))
    killed = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [*proc.children(recursive=True), proc]:
                p.kill()
            killed.append(pid)
        except psutil.Error:
            continue
    logger.warning("the local Dask cluster did not close in %d s twice; killed its worker processes %s",
                   CLOSE_TIMEOUT_S, killed or "(none left)")
