"""Hot model swap: the service follows a deployment pointer and swaps bundles without a restart.

``activity-scorer serve`` (on an alias, the champion by default) publishes the alias's bundle to a
*pointer file* and keeps polling the registry; when the alias moves it publishes the new bundle
(``training.follow``). Each service worker started with ``ACTIVITY_SCORER_FOLLOW=<pointer file>``
watches that file (one ``stat`` every ``ACTIVITY_SCORER_FOLLOW_INTERVAL_S``, 2 s by default) and, when it
names another bundle:

1. loads the bundle, builds a :class:`serving.scorer.Scorer` on it and warms it up, all in a worker
   thread, while the current scorer keeps answering;
2. installs it with one attribute assignment on the event loop. A request holds the scorer it started
   with until it is answered, so every answer comes from exactly one bundle and names its version
   (``model.version``); nothing is ever half swapped.

A bundle that cannot be loaded (missing, corrupt, an unknown format, a pointer that is not JSON)
leaves the current bundle serving: the reason is logged as an error and shown by ``GET /model``
under ``follow.last_error`` until a later pointer loads. The same pointer is not retried.

The pointer (written atomically by ``training.follow``) is a JSON object::

    {"bundle": "/abs/dir", "version": "4", "uri": "models:/activity-outcome@champion", "published_at": "..."}

The training package is never imported here: the service reads a directory, as at start-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from serving.model_store import LoadedModel, load_bundle_dir

logger = logging.getLogger(__name__)

FOLLOW_ENV = "ACTIVITY_SCORER_FOLLOW"
POINTER_KEYS = ("bundle", "version")


class PointerError(ValueError):
    """The pointer file cannot be read or does not name a bundle (the message says why)."""


def read_pointer(path: Path) -> dict[str, Any]:
    """The pointer's JSON object (``bundle`` and ``version`` at least).

    Raises:
        PointerError: unreadable, not JSON, or without a ``bundle``.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise PointerError(f"{path}: cannot read the deployment pointer ({err.strerror})") from None
    except ValueError:
        raise PointerError(f"{path}: the deployment pointer is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("bundle"), str) or not data["bundle"]:
        raise PointerError(f"{path}: the deployment pointer names no bundle (expected {{\"bundle\": DIR, ...}})")
    return data


@dataclass
class FollowStatus:
    """What ``GET /model`` shows under ``follow`` (no payload, no key)."""

    pointer: str
    interval_s: float
    swaps: int = 0
    last_swap_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    failed_bundle: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelFollower:
    """Watches a pointer file and swaps the service's scorer when it names another bundle.

    Args:
        pointer: the pointer file.
        current_path: the bundle directory being served now.
        build: loaded model -> a ready (warmed-up) scorer; runs in a worker thread.
        install: puts the new scorer in service; runs on the event loop.
        interval_s: seconds between two looks at the pointer.
        load: bundle directory -> loaded model (tests replace it).
    """

    pointer: Path
    current_path: Path
    build: Callable[[LoadedModel], Any]
    install: Callable[[Any], None]
    interval_s: float = 2.0
    load: Callable[[Path], LoadedModel] = load_bundle_dir
    status: FollowStatus = field(init=False)
    _seen: tuple[int, int] | None = field(default=None, init=False)
    _task: asyncio.Task | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.pointer = Path(self.pointer)
        self.current_path = Path(self.current_path).resolve()
        self.status = FollowStatus(str(self.pointer), self.interval_s)

    def _changed_target(self) -> tuple[Path | None, str | None]:
        """``(bundle dir, version)`` when the pointer changed and names another bundle, else ``(None, None)``."""
        try:
            st = self.pointer.stat()
        except FileNotFoundError:
            return None, None  # not published yet (or being replaced): keep serving
        key = (st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return None, None
        self._seen = key
        data = read_pointer(self.pointer)
        target = Path(data["bundle"]).resolve()
        if target == self.current_path:
            return None, None
        return target, str(data.get("version") or "")

    async def check_once(self) -> bool:
        """Look at the pointer once; load and install the bundle it names if it changed. True on a swap."""
        try:
            target, version = self._changed_target()
        except PointerError as err:
            self._failed(None, str(err))
            return False
        if target is None:
            return False
        started = time.perf_counter()
        try:
            scorer = await anyio.to_thread.run_sync(self._prepare, target)
        except Exception as err:  # noqa: BLE001  (any failure of a new bundle keeps the old one serving, said loudly)
            self._failed(target, f"{type(err).__name__}: {err}")
            return False
        previous = self.current_path
        loaded_ms = (time.perf_counter() - started) * 1000.0
        installing = time.perf_counter()
        self.install(scorer)
        install_ms = (time.perf_counter() - installing) * 1000.0
        self.current_path = target
        self.status.swaps += 1
        self.status.last_swap_at = _now_text()
        self.status.last_error = self.status.last_error_at = self.status.failed_bundle = None
        logger.info("model swapped: now serving version %s from %s (was %s); loaded in %.0f ms (a worker thread), "
                    "installed in %.0f ms", version or "?", target, previous, loaded_ms, install_ms)
        return True

    def _prepare(self, target: Path) -> Any:
        return self.build(self.load(target))

    def _failed(self, target: Path | None, reason: str) -> None:
        self.status.last_error = reason
        self.status.last_error_at = _now_text()
        self.status.failed_bundle = None if target is None else str(target)
        logger.error("model swap refused, still serving %s: %s", self.current_path, reason)

    async def run(self) -> None:
        """Check the pointer every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check_once()

    def start(self) -> None:
        """Run :meth:`run` as a task of the running event loop (call from the service's async start-up)."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="activity-scorer-model-follower")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
