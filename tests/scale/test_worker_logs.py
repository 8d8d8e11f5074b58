"""The local cluster's workers: stdout to stderr, and one line (not a traceback every 100 ms) for LightGBM's port socket."""

from __future__ import annotations

import logging
import logging.handlers

import pytest

from engine import worker_logs


@pytest.fixture
def records():
    """What distributed's pickling loggers emit during a test (they do not propagate to caplog)."""
    handler = logging.handlers.BufferingHandler(100_000)
    loggers = [logging.getLogger(n) for n in worker_logs.LOGGERS]
    for lg in loggers:
        lg.addHandler(handler)
    yield handler.buffer
    for lg in loggers:
        lg.removeHandler(handler)
    worker_logs.uninstall()


def _evict_a_port_socket(tmp_path, times: int) -> list[int]:
    """What a worker's memory manager does above its spill threshold, with LightGBM's result the oldest held."""
    from distributed.spill import SpillBuffer
    from lightgbm.dask import _acquire_port

    buf = SpillBuffer(str(tmp_path / "spill"), target=10**9)
    sock, port = _acquire_port()  # the result lightgbm.dask keeps on each worker through a fit
    try:
        buf["_acquire_port-0"] = (sock, port)
        return [buf.evict() for _ in range(times)]
    finally:
        sock.release()


def test_without_the_filter_each_attempt_logs_a_traceback(tmp_path, records):
    # the condition the filter exists for, on the installed distributed and LightGBM: if this starts
    # failing, sockets spill or are no longer logged, and engine.worker_logs (and its docs) can go
    results = _evict_a_port_socket(tmp_path, times=6)

    assert results == [-1] * 6  # never spilled: it stays in memory
    errors = [r for r in records if r.levelno == logging.ERROR and r.exc_info]
    assert len(errors) >= 6, [r.getMessage() for r in records]
    assert all(worker_logs._names_port_socket(r) for r in errors)


def test_with_the_filter_one_warning_line_and_nothing_else(tmp_path, records):
    quiet = worker_logs.install()
    assert worker_logs.install() is quiet  # once per process

    results = _evict_a_port_socket(tmp_path, times=6)

    assert results == [-1] * 6
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in records] == [("WARNING", worker_logs.MESSAGE, None)]
    assert quiet.warned and quiet.dropped >= 6  # six serialisation tracebacks and the spill buffer's own


def test_the_filter_lets_every_other_record_through_as_it_was(records):
    worker_logs.install()
    lg = logging.getLogger("distributed.protocol.pickle")
    try:
        raise TypeError("cannot pickle 'generator' object")
    except TypeError:
        lg.exception("Failed to serialize %s.", "<generator object f at 0x1>")
    lg.error("Failed to serialize %s.", "(<lightgbm.dask._RemoteSocket object at 0x2>, 41234)")

    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("ERROR", "Failed to serialize <generator object f at 0x1>."),  # not ours: untouched, traceback kept
        ("WARNING", worker_logs.MESSAGE),
    ]
    assert records[0].exc_info is not None


@pytest.mark.slow
@pytest.mark.xdist_group("dask-cluster")
def test_the_local_clusters_workers_carry_the_filter(dask_client):
    def on_worker(dask_worker):
        import logging
        import logging.handlers

        from lightgbm.dask import _acquire_port

        from engine.worker_logs import LOGGERS, PortSocketLogFilter

        quiet = [f for f in logging.getLogger(LOGGERS[0]).filters if isinstance(f, PortSocketLogFilter)]
        handler = logging.handlers.BufferingHandler(100_000)
        for n in LOGGERS:
            logging.getLogger(n).addHandler(handler)
        sock, port = _acquire_port()
        key = f"test-port-socket-{port}"
        try:
            dask_worker.data[key] = (sock, port)
            failed = 0
            for _ in range(10_000):  # older results spill first; then the socket is the oldest
                if dask_worker.data.evict() == -1:
                    failed += 1
                    if failed == 5:
                        break
            del dask_worker.data[key]
        finally:
            sock.release()
            for n in LOGGERS:
                logging.getLogger(n).removeHandler(handler)
        return (len(quiet), failed,
                [(r.levelname, r.getMessage(), r.exc_info is not None) for r in handler.buffer])

    seen = dask_client.run(on_worker)

    assert len(seen) == 2
    for n_filters, failed, logged in seen.values():
        assert n_filters == 1 and failed == 5
        # the warning is once per worker process: an earlier test may already have had it
        assert all(level == "WARNING" and message == worker_logs.MESSAGE and not tb for level, message, tb in logged)
        assert len(logged) <= 1


def _worker_output_setup() -> tuple[bool, int]:
    """On a worker: whether its stdout is its stderr, and how many port-socket filters it carries."""
    import logging
    import os

    from engine.worker_logs import LOGGERS, PortSocketLogFilter

    out, err = os.fstat(1), os.fstat(2)
    n = sum(isinstance(f, PortSocketLogFilter) for f in logging.getLogger(LOGGERS[0]).filters)
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino), n


@pytest.mark.slow
@pytest.mark.xdist_group("dask-cluster")
def test_a_restarted_worker_is_set_up_as_the_first(scale_home, capfd):
    """A worker the nanny restarts (after a memory kill) would otherwise print LightGBM onto ``train --json``'s stdout."""
    from engine.cluster import ClusterSettings, open_client

    with open_client(ClusterSettings(workers=1, memory_limit="1GiB"), scale_home) as client:
        before = list(client.run(_worker_output_setup).values())
        client.restart()
        after = list(client.run(_worker_output_setup).values())
        client.run(lambda: print("from the restarted worker", flush=True))
    out = capfd.readouterr().out

    assert before == after == [(True, 1)]
    assert "from the restarted worker" not in out
