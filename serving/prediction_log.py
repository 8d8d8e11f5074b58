"""The prediction log: every ``/score`` and ``/rank`` answer, appended durably as JSON lines.

What ``activity-scorer monitor`` reads to see what was served (score drift, realized
quality once the labels close) and what issue 17's exploration analysis reads.

API (for the service and for ``/rank``)::

    log = open_prediction_log(settings)        # None when the log is disabled
    log.append(record)                         # one dict, one JSON line; thread and process safe
    log.defer(lambda: score_record(request, answer))  # /score: built off the request path, then appended
    log.close()
    frame = read_predictions(directory, since=..., endpoint="score")  # one row per item (monitor)
    records = list(iter_records(directory))                          # raw records, oldest file first

``append`` adds ``v`` (format 1), ``ts`` (UTC, ISO 8601) and ``pid`` when absent. A ``/rank``
record carries what the lead's ``/rank`` builds (state id, candidates, scores, the order shown,
model version, exploration propensities); the reader keeps unknown keys.

**What a record holds.** Ids (activity, deal, contact, account, rep), the activity type and
time, the model name and version, the outputs, and ``input_hash``: the SHA-256 of the item's
canonical JSON (sorted keys; for an item completed from the history store, of the item with what
the store supplied), so a later replay can prove which inputs were scored without the log
holding them. No names, e-mail addresses, free text or custom fields: nothing about a
person beyond the ids the CRM already uses.

**Durability.** Every record is one ``os.write`` of one line to a file opened with
``O_APPEND``, so a crash never leaves half a record in the middle of a file (a torn last line
is skipped by the reader, which counts it). The line reaches the operating system at once
(survives a crash of the service); ``fsync`` runs at most once per ``fsync_seconds`` (default
1 s) and at every rotation and close, so a power loss can cost at most about the last second.

**Several workers.** Each process writes its own file
(``predictions-<UTC stamp>-<pid>.active.jsonl``) under a thread lock, so records never
interleave and no lock is shared between processes. A file reaching ``max_file_bytes`` is
closed and renamed ``....jsonl`` (rotation) and a new one opened. After each rotation the
oldest closed files are deleted until the directory holds at most ``max_total_bytes``;
active files of other live processes are never deleted (those of dead processes are closed
files to the pruner).

Settings (``serving.settings``): ``ACTIVITY_SCORER_PREDICTION_LOG`` (directory; default
``$ACTIVITY_SCORER_HOME/predictions``; ``off`` disables), ``..._PREDICTION_LOG_MAX_MB``
(per file, default 64) and ``..._PREDICTION_LOG_TOTAL_MB`` (directory, default 1024).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ACTIVE_SUFFIX = ".active.jsonl"
CLOSED_SUFFIX = ".jsonl"
PREFIX = "predictions-"
DISABLED_VALUES = ("off", "none", "0", "false", "no", "disabled")
ID_FIELDS = ("activity_id", "deal_id", "contact_id", "account_id", "rep_id")
OUTPUT_FIELDS = ("p_outcome", "p_output", "p_negative")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def input_hash(value: Any) -> str:
    """SHA-256 of a JSON-able value's canonical JSON (sorted keys, no spaces): ``sha256:<hex>``."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class PredictionLog:
    """An append-only JSON-lines log in one directory (see module docstring).

    Args:
        directory: where the files go (created).
        max_file_bytes: a file this large is rotated.
        max_total_bytes: closed files beyond this total are deleted, oldest first.
        fsync_seconds: at most one ``fsync`` per this many seconds (0: after every record).
    """

    def __init__(self, directory: Path, max_file_bytes: int = 64 << 20, max_total_bytes: int = 1 << 30,
                 fsync_seconds: float = 1.0) -> None:
        if max_file_bytes <= 0 or max_total_bytes <= 0:
            raise ValueError("prediction log: max_file_bytes and max_total_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_file_bytes = int(max_file_bytes)
        self.max_total_bytes = int(max_total_bytes)
        self.fsync_seconds = float(fsync_seconds)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._last_sync = 0.0
        self._pid = os.getpid()
        self.records = 0  # appended by this object
        self.errors = 0
        self._queue: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path | None:
        """The file being written (None before the first record)."""
        return self._path

    def _open(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self._path = self.directory / f"{PREFIX}{stamp}-{self._pid}{ACTIVE_SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = os.fstat(self._fd).st_size

    def _close_file(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
        assert self._path is not None
        closed = self._path.with_name(self._path.name[: -len(ACTIVE_SUFFIX)] + CLOSED_SUFFIX)
        os.replace(self._path, closed)
        self._path = None

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as one JSON line (thread safe; never raises on I/O: logs and counts)."""
        if record is None:  # flush() marker
            return
        record = dict(record)
        record.setdefault("v", FORMAT_VERSION)
        record.setdefault("ts", _now())
        record.setdefault("pid", self._pid)
        line = (json.dumps(record, separators=(",", ":"), default=str, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                if os.getpid() != self._pid:  # forked: never share a file with the parent
                    self._fd, self._path, self._pid = None, None, os.getpid()
                if self._fd is None:
                    self._open()
                elif self._size + len(line) > self.max_file_bytes and self._size > 0:
                    self._close_file()
                    self._prune()
                    self._open()
                os.write(self._fd, line)
                self._size += len(line)
                self.records += 1
                now = time.monotonic()
                if now - self._last_sync >= self.fsync_seconds:
                    os.fsync(self._fd)
                    self._last_sync = now
            except OSError as err:
                self.errors += 1
                logger.error("prediction log %s: cannot append a record (%s); the answer was still served",
                             self.directory, err)

    def defer(self, build: Callable[[], dict[str, Any]]) -> None:
        """Build and append a record on the log's own thread (keeps hashing and writing off the request path).

        ``build`` runs later, once, on a background thread; its exceptions are logged and counted.
        """
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
                self._thread.start()
                atexit.register(self.close)
        self._queue.put(build)

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            build = self._queue.get()
            if build is None:
                return
            try:
                self.append(build())
            except Exception as err:  # noqa: BLE001 - a bad record must not stop the log
                self.errors += 1
                logger.error("prediction log: cannot build a record (%s: %s)", type(err).__name__, err)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every deferred record is written (tests, shutdown)."""
        if self._queue is None or self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done.set)  # runs as a "build": sets the event, then its None record is skipped
        done.wait(timeout)

    def close(self) -> None:
        """Write what is deferred, then fsync, close and rename the current file (a closed file for the reader)."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(10.0)
        with self._lock:
            try:
                self._close_file()
            except OSError as err:
                logger.error("prediction log %s: cannot close %s (%s)", self.directory, self._path, err)

    def _prune(self) -> None:
        """Delete the oldest closed files while the directory holds more than ``max_total_bytes``."""
        files = []
        for p in self.directory.glob(PREFIX + "*"):
            try:
                st = p.stat()
            except OSError:
                continue
            active = p.name.endswith(ACTIVE_SUFFIX)
            closed = not active or not _pid_alive(_pid_of(p.name))  # an active file of a dead process is closed
            files.append((p.name, p, st.st_size, closed))
        total = sum(size for _, _, size, _ in files)
        for _, p, size, closed in sorted(files):  # names start with the UTC stamp: oldest first
            if total <= self.max_total_bytes:
                break
            if not closed or p == self._path:
                continue
            try:
                p.unlink()
                total -= size
                logger.info("prediction log: deleted %s (directory over %d bytes)", p.name, self.max_total_bytes)
            except OSError:
                continue


def _pid_of(name: str) -> int | None:
    stem = name[len(PREFIX):].split(".")[0]
    try:
        return int(stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_prediction_log(settings) -> PredictionLog | None:  # noqa: ANN001 - serving.settings.Settings
    """The service's log from its settings; None when ``prediction_log`` is ``off``."""
    where = (getattr(settings, "prediction_log", "") or "").strip()
    if where.lower() in DISABLED_VALUES:
        logger.info("prediction log disabled (ACTIVITY_SCORER_PREDICTION_LOG=%s)", where)
        return None
    directory = Path(where) if where else default_directory()
    log = PredictionLog(directory, int(float(getattr(settings, "prediction_log_max_mb", 64)) * (1 << 20)),
                        int(float(getattr(settings, "prediction_log_total_mb", 1024)) * (1 << 20)))
    logger.info("prediction log: %s (per file %d MB, in all %d MB)", directory, log.max_file_bytes >> 20,
                log.max_total_bytes >> 20)
    return log


def default_directory() -> Path:
    """``$ACTIVITY_SCORER_HOME/predictions`` (the data home, as everything the project writes)."""
    return Path(os.environ.get("ACTIVITY_SCORER_HOME", ".activity-scorer")).resolve() / "predictions"


def _ids(obj: dict | None, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: obj[k] for k in keys if obj and obj.get(k) is not None}


def score_record(request: Any, response: Any) -> dict[str, Any]:
    """The ``/score`` record: model, and per item its ids, type, time, input hash and outputs.

    Args:
        request: the validated ``ScoreRequest`` (pydantic) or its dict.
        response: the ``ScoreResponse`` (pydantic) or its dict.
    """
    req = request.model_dump(mode="json", exclude_none=True) if hasattr(request, "model_dump") else dict(request)
    res = response.model_dump(mode="json", exclude_none=True) if hasattr(response, "model_dump") else dict(response)
    # an item completed from the history store holds what was read (deal, contact, account, history)
    # beside its fields: that is what was scored, so that is what the hash covers
    given = list(request.items or []) if hasattr(request, "model_dump") else []
    items = []
    for k, (item, result) in enumerate(zip(req.get("items", []), res.get("results", []), strict=False)):
        plain = getattr(given[k], "_plain", None) if k < len(given) else None
        act = item.get("activity") or {}
        row = _ids(act, ID_FIELDS) | _ids(act, ("type", "occurred_at"))
        account = item.get("account") or (plain or {}).get("account")
        if "account_id" not in row and account:
            row |= _ids(account, ("account_id",))
        row["input_hash"] = input_hash(plain if plain is not None else item)
        row |= {k: result.get(k) for k in OUTPUT_FIELDS}
        if result.get("activity_id") is not None:
            row["activity_id"] = result["activity_id"]
        items.append(row)
    model = res.get("model") or {}
    return {"endpoint": "score", "model": {"name": model.get("name"), "version": model.get("version")},
            "items": items}


CANDIDATE_FIELDS = ("type", "contact_id", "rep_id", "is_automated", "personalization", "sequence_step", "channel")
RANK_SCORES = ("effect", "effect_low", "effect_high", "cost", "net_effect", "propensity")


def _num(value: Any) -> float | None:
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def rank_record(request: Any, shown: list[dict[str, Any]], scores: dict[str, Any], order: list[int],
                top_k: int, ranked_by: str, model: Any, at: str, explored: bool = False,
                exploration: float = 0.0) -> dict[str, Any]:
    """The ``/rank`` record: the state, every candidate with its scores, the order shown, the model.

    Enough to evaluate another ranker off-policy later: each candidate's ``propensity`` is the
    probability that this service showed it first (1 for the top-1 and 0 for the rest without
    exploration; with exploration rate e, e/|pool| plus 1-e for the ranker's pick).

    Args:
        request: the validated ``RankRequest`` (pydantic) or its dict.
        shown: the candidate activities, in request order (type, contact, automation...).
        scores: per-candidate arrays by name (``p_outcome``, ``effect``, ``overlap``, ``guardrail``...).
        order: the full order, best first (indices into ``shown``); the first ``top_k`` were returned.
        at: the state's time (ISO 8601).
    """
    req = request.model_dump(mode="json", exclude_none=True) if hasattr(request, "model_dump") else dict(request)
    deal = req.get("deal") or {}
    state = {"deal_id": deal.get("deal_id"), "account_id": (req.get("account") or {}).get("account_id")
             or deal.get("account_id"), "rep_id": req.get("rep_id") or deal.get("owner_rep_id"), "at": at}
    state_hash = input_hash({k: req.get(k) for k in ("deal", "contact", "account", "history", "rep_id")} | {"at": at})
    rank_of = {i: k for k, i in enumerate(order)}
    candidates = []
    for i, activity in enumerate(shown):
        row: dict[str, Any] = {"index": i, **{k: activity[k] for k in CANDIDATE_FIELDS if activity.get(k) is not None}}
        for name, values in scores.items():
            if values is None:
                continue
            value = values[i]
            if name in ("overlap",):
                row[name] = bool(value)
            elif name == "guardrail":
                if value:
                    row[name] = str(value)
            else:
                row[name] = _num(value)
        row["rank"] = rank_of.get(i)
        row["shown"] = rank_of.get(i, top_k) < top_k
        candidates.append(row)
    ref = model.model_dump(mode="json") if hasattr(model, "model_dump") else dict(model or {})
    return {"endpoint": "rank", "state_id": f"{state['deal_id']}@{at}:{state_hash[7:23]}", "state": state,
            "input_hash": state_hash, "model": {"name": ref.get("name"), "version": ref.get("version")},
            "ranked_by": ranked_by, "explored": bool(explored), "exploration": float(exploration),
            "top_k": int(top_k), "order": [int(i) for i in order], "candidates": candidates}


def log_files(directory: Path) -> list[Path]:
    """Every log file of a directory (closed and active), oldest first by the stamp in the name."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.glob(PREFIX + "*") if p.name.endswith(CLOSED_SUFFIX)), key=lambda p: p.name)


def iter_records(directory: Path) -> Iterator[dict[str, Any]]:
    """Every record of the log, file by file (oldest first); torn or bad lines are skipped and counted."""
    bad = 0
    for path in log_files(directory):
        try:
            with path.open("rb") as fh:
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        bad += 1  # a torn last line (the writer died mid-write)
                        continue
                    try:
                        rec = json.loads(raw)
                    except ValueError:
                        bad += 1
                        continue
                    if isinstance(rec, dict):
                        yield rec
                    else:
                        bad += 1
        except OSError as err:  # rotated or pruned while reading
            logger.warning("prediction log: cannot read %s (%s)", path, err)
    if bad:
        logger.warning("prediction log %s: %d unreadable line(s) skipped", directory, bad)


def read_predictions(directory: Path, since: Any = None, until: Any = None, endpoint: str | None = None):
    """The log as a table, one row per item: ``ts``, ``endpoint``, ``model_name``, ``model_version``,
    the ids, ``type``, ``occurred_at``, ``input_hash`` and the outputs (what ``monitor`` reads).

    Args:
        directory: the log directory.
        since, until: keep records whose ``ts`` is in ``[since, until)`` (anything ``pd.Timestamp`` reads).
        endpoint: keep only ``"score"`` or ``"rank"`` records.
    """
    import pandas as pd

    rows = []
    for rec in iter_records(directory):
        if endpoint is not None and rec.get("endpoint") != endpoint:
            continue
        model = rec.get("model") or {}
        base = {"ts": rec.get("ts"), "endpoint": rec.get("endpoint"), "model_name": model.get("name"),
                "model_version": model.get("version")}
        for item in rec.get("items") or []:
            if isinstance(item, dict):
                rows.append(base | item)
    cols = ["ts", "endpoint", "model_name", "model_version", *ID_FIELDS, "type", "occurred_at", "input_hash",
            *OUTPUT_FIELDS]
    frame = pd.DataFrame(rows)
    for col in cols:
        if col not in frame.columns:
            frame[col] = None
    if not len(frame):
        return frame[cols]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, errors="coerce")
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True, errors="coerce", format="ISO8601")
    for col in OUTPUT_FIELDS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    keep = frame["ts"].notna()
    if since is not None:
        keep &= frame["ts"] >= _utc(since)
    if until is not None:
        keep &= frame["ts"] < _utc(until)
    return frame.loc[keep.to_numpy(dtype=bool)].reset_index(drop=True)


def _utc(value: Any):
    import pandas as pd

    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
