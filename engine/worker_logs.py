"""What the local cluster's workers print: stderr only, and one line for LightGBM's port sockets.

Stdout: a worker's LightGBM (C++ and Python) prints to the process's stdout, which is the
command's; ``train --json`` and ``features`` write their results there, so workers send
stdout to stderr.

Port sockets: ``lightgbm.dask`` reserves a port on every worker before each fit with a bound socket, and keeps
it as a Dask result (``lightgbm.dask._RemoteSocket``) through the fit. A worker whose
process memory is above its spill threshold tries, ten times a second, to spill its oldest
results to disk; a socket cannot be pickled, so distributed keeps that result in memory, stops
that round of spilling, and logs the pickling traceback each time. In the 10M default run
(docs/scale.md) the workers were above the threshold through the refits and wrote 21,139 such
tracebacks to the command's stderr; nothing failed.

:class:`PortSocketLogFilter` lets the first of them through as one warning line per worker
that says what happens, and drops the rest. Every other record of those loggers passes as it was.
"""

from __future__ import annotations

import logging
import os
import sys

from distributed import WorkerPlugin

# distributed's loggers that report a result it could not pickle: one traceback per attempt, and
# one per result the spill buffer could not write
LOGGERS = ("distributed.protocol.pickle", "distributed.spill")
MARK = "_RemoteSocket"  # lightgbm.dask's class; in the message (its repr) or in the chained TypeError
MESSAGE = ("this worker cannot spill LightGBM's port socket (lightgbm.dask._RemoteSocket; sockets cannot be "
           "pickled): it stays in memory until LightGBM's fit ends, and while it is the oldest result the worker "
           "holds, the worker spills nothing; the pickling tracebacks of each further spill attempt are not "
           "shown (docs/scale.md)")


def _names_port_socket(record: logging.LogRecord) -> bool:
    """Whether the record is distributed failing to pickle a LightGBM port socket."""
    try:
        if MARK in record.getMessage():
            return True
    except Exception:  # noqa: BLE001 - a record whose message does not format is not ours to judge
        return False
    err = record.exc_info[1] if record.exc_info else None
    for _ in range(8):  # PickleError <- TypeError('Could not serialize object of type _RemoteSocket') <- ...
        if err is None:
            return False
        if MARK in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


class PortSocketLogFilter(logging.Filter):
    """Turns the first record about a port socket into :data:`MESSAGE` (a warning) and drops the rest.

    Attributes:
        warned: the warning has been let through.
        dropped: records about port sockets dropped since.
    """

    def __init__(self) -> None:
        super().__init__()
        self.warned = False
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not _names_port_socket(record):
            return True
        if self.warned:
            self.dropped += 1
            return False
        self.warned = True
        record.msg, record.args = MESSAGE, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def install() -> PortSocketLogFilter:
    """Put one :class:`PortSocketLogFilter` on distributed's pickling loggers in this process (idempotent)."""
    for f in logging.getLogger(LOGGERS[0]).filters:
        if isinstance(f, PortSocketLogFilter):
            return f
    quiet = PortSocketLogFilter()
    for name in LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    return quiet


def uninstall() -> None:
    """Take every :class:`PortSocketLogFilter` off distributed's pickling loggers in this process."""
    for name in LOGGERS:
        lg = logging.getLogger(name)
        for f in [f for f in lg.filters if isinstance(f, PortSocketLogFilter)]:
            lg.removeFilter(f)


def stdout_to_stderr() -> None:
    """In a worker: send stdout (LightGBM's C++ and Python messages) to stderr, keeping the command's stdout clean."""
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), 1)


class LocalWorkerOutput(WorkerPlugin):
    """Sets up every worker of the engine's local cluster, restarted ones too: stdout to stderr, the port-socket filter."""

    name = "activity-scorer-local-worker-output"
    idempotent = True

    def setup(self, worker) -> None:  # noqa: ANN001 - distributed.Worker
        stdout_to_stderr()
        install()
