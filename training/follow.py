"""Following a registry alias: publish its bundle where a running service picks it up (issue 12).

``activity-scorer serve`` on an alias (``models:/activity-outcome@champion`` by default) runs
``bentoml serve`` as a child process and, in its own process, polls the MLflow registry every few
seconds (:func:`run_following`). When the alias points at another version, :class:`AliasFollower`

1. downloads that version's bundle into a temporary directory beside the published ones and renames
   it to ``v<version>/`` (a rename is atomic: a bundle directory is there whole or not at all);
2. replaces the pointer file ``pointer.json`` atomically (written to a temporary file, flushed to
   disk, then ``os.replace``), naming the new directory and version.

The service's workers watch the pointer (:mod:`serving.reload`) and swap without a restart. A crash
at any moment leaves the pointer naming a complete bundle: the old one or the new one. The last
:data:`KEEP_BUNDLES` published bundles are kept (a worker may still be loading the previous one).

Layout, under ``$ACTIVITY_SCORER_HOME/serving/<name>@<alias>/``: ``pointer.json``, ``v3/``, ``v4/``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")
POINTER_FILE = "pointer.json"
KEEP_BUNDLES = 3


def alias_of(uri: str) -> tuple[str, str] | None:
    """``(name, alias)`` of a ``models:/NAME@ALIAS`` URI, None for any other URI."""
    m = ALIAS_URI.match(uri)
    return (m.group("name"), m.group("alias")) if m else None


@dataclass(frozen=True)
class Published:
    """A bundle the pointer names: its registry version and directory."""

    version: str
    bundle: Path


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: readers see the old file or the new one, never a part (survives a crash)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class AliasFollower:
    """Publishes the bundle of ``models:/NAME@ALIAS`` under ``home/serving/NAME@ALIAS``.

    Args:
        uri: a ``models:/NAME@ALIAS`` URI.
        home: the data home (``$ACTIVITY_SCORER_HOME``).

    Raises:
        ValueError: the URI names no alias.
    """

    def __init__(self, uri: str, home: Path) -> None:
        parsed = alias_of(uri)
        if parsed is None:
            raise ValueError(f"{uri}: not a models:/NAME@ALIAS URI (only an alias can be followed)")
        self.uri = uri
        self.name, self.alias = parsed
        self.root = Path(home) / "serving" / re.sub(r"[^A-Za-z0-9._@-]+", "_", f"{self.name}@{self.alias}")
        self.pointer = self.root / POINTER_FILE
        self.published: Published | None = None

    def current_version(self) -> str | None:
        """The version the alias points at now (None when it is not set)."""
        from training import tracking

        mv = tracking.get_version(self.name, alias=self.alias)
        return None if mv is None else str(mv.version)

    def publish(self, version: str | None = None) -> Published | None:
        """Publish ``version`` (default: the alias's) unless it is already published; returns it, or None.

        Raises:
            training.tracking.TrackingError: the alias is not set, or the version cannot be downloaded.
        """
        from models.bundle import MANIFEST_FILE
        from training import tracking

        version = version or self.current_version()
        if version is None:
            raise tracking.TrackingError(f"registered model {self.name!r} has no alias {self.alias!r}"
                                         + (" (run `activity-scorer promote` first)" if self.alias == "champion" else ""))
        if self.published is not None and self.published.version == version:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / f"v{version}"
        if not (target / MANIFEST_FILE).is_file():
            tmp = self.root / f".v{version}.{os.getpid()}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                fetched = tracking.fetch_bundle(f"models:/{self.name}/{version}", tmp)
                shutil.rmtree(target, ignore_errors=True)  # a directory without its manifest: an earlier crash
                os.rename(fetched.path, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        published = Published(version, target.resolve())
        write_atomically(self.pointer, json.dumps({
            "bundle": str(published.bundle), "version": version, "uri": self.uri,
            "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")
        logger.info("published %s version %s at %s", self.uri, version, published.bundle)
        self.published = published
        self._prune()
        return published

    def _prune(self) -> None:
        """Delete published bundles beyond the :data:`KEEP_BUNDLES` newest (never the one the pointer names)."""
        dirs = [p for p in self.root.iterdir() if p.is_dir() and re.fullmatch(r"v\d+", p.name)]
        dirs.sort(key=lambda p: int(p.name[1:]), reverse=True)
        current = self.published.bundle if self.published else None
        for old in dirs[KEEP_BUNDLES:]:
            if old.resolve() != current:
                shutil.rmtree(old, ignore_errors=True)


def run_following(cmd: list[str], env: dict[str, str], follower: AliasFollower, interval_s: float = 5.0) -> int:
    """Run the service ``cmd`` and publish the alias's new versions until the service exits; its exit code.

    SIGINT and SIGTERM are passed on to the service (its own process group), which stops its workers.
    A registry that cannot be read for a moment is logged and tried again at the next poll.
    """
    from training import tracking

    child = subprocess.Popen(cmd, env=env, start_new_session=True)

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return child.wait(timeout=interval_s)
            except subprocess.TimeoutExpired:
                pass
            started = time.perf_counter()
            try:
                if follower.publish() is not None:
                    logger.info("the service will swap to %s version %s (published in %.1f s)", follower.uri,
                                follower.published.version, time.perf_counter() - started)
            except (tracking.TrackingError, OSError) as err:
                logger.warning("following %s: %s (trying again in %.0f s)", follower.uri, err, interval_s)
            except Exception as err:  # noqa: BLE001  (an MLflow hiccup must not stop a serving service)
                logger.warning("following %s: %s: %s (trying again in %.0f s)", follower.uri, type(err).__name__,
                               str(err).splitlines()[0] if str(err) else "", interval_s)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if child.poll() is None:
            forward(signal.SIGTERM, None)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                forward(signal.SIGKILL, None)
                child.wait()
