"""Serving settings: read from the environment in one place.

Every setting has an ``ACTIVITY_SCORER_`` environment variable. The ``serve`` command
sets the model location; the rest have defaults suited to a CRM calling the service.

Model location (exactly one is needed when the service starts):

- ``ACTIVITY_SCORER_MODEL_TAG``: a tag in the local BentoML model store, written by the
  deploy step (``python -m serving.model_store deploy``, run by ``activity-scorer serve``).
- ``ACTIVITY_SCORER_BUNDLE``: a model bundle directory (tests, a bundle copied by hand).

API keys: ``ACTIVITY_SCORER_API_KEYS`` (comma-separated) and/or
``ACTIVITY_SCORER_API_KEYS_FILE`` (one key per line, ``#`` comments). When either gives a
key, every call except health, metrics and docs needs ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

PREFIX = "ACTIVITY_SCORER_"
MODEL_TAG_ENV = PREFIX + "MODEL_TAG"
BUNDLE_ENV = PREFIX + "BUNDLE"
API_KEYS_ENV = PREFIX + "API_KEYS"
API_KEYS_FILE_ENV = PREFIX + "API_KEYS_FILE"


class SettingsError(ValueError):
    """A serving setting has a value that cannot be used (names the variable)."""


@dataclass(frozen=True)
class Settings:
    """Serving settings (environment variable: ``ACTIVITY_SCORER_`` + upper-case name).

    Attributes:
        model_tag: BentoML model-store tag of the bundle to serve.
        bundle: bundle directory to serve (used when ``model_tag`` is empty).
        api_keys: inline API keys, comma-separated.
        api_keys_file: file with one API key per line.
        max_items: most items one ``/score`` request may carry.
        max_history_rows: most history rows one item (or one ``/rank`` request) may carry,
            all history tables together.
        max_candidates: most candidates ``/rank`` scores (given or proposed).
        max_body_bytes: largest request body accepted.
        max_factors: factors returned per result when explanations are asked for.
        max_rank_contacts: contacts ``/rank`` proposes candidates for, when it proposes them.
        timeout_s: per-request timeout (504 after it).
        workers: server processes.
        inline_rows: requests up to this size (activities scored x (1 + history rows)) are computed
            on the event loop; larger ones in a worker thread, so they never stall health checks.
        keepalive_requests: with several workers, API requests served on one keep-alive
            connection before the service asks the client to reconnect, so connections spread
            over the workers (see :mod:`serving.middleware`).
        batch_max_items: ``/score`` requests waiting for the same worker are scored together, up
            to this many items per call (see :mod:`serving.batching`); 1 switches batching off.
        log_level: level of the service's own loggers (one line per request at INFO).
        runtime_fixes: apply the BentoML work-arounds of :mod:`serving.runtime` (on by default;
            ``0`` only to measure what they fix).
        store: the history store (``sqlite:///FILE`` or ``postgresql://...``; empty: none; ``serve``
            sets the data home's ``store.db`` when it exists), see :mod:`serving.store_access`.
        max_event_rows: most rows one ``POST /events`` request may carry, all tables together.
        prediction_log: directory of the prediction log (:mod:`serving.prediction_log`); empty:
            ``$ACTIVITY_SCORER_HOME/predictions``; ``off`` disables it.
        prediction_log_max_mb: a log file this large is rotated.
        prediction_log_total_mb: the oldest closed log files are deleted beyond this total.
        follow: a deployment pointer file to follow: when it names another bundle, the service swaps
            to it without a restart (:mod:`serving.reload`; ``serve`` sets it when serving an alias).
        follow_interval_s: seconds between two looks at the pointer.
        rate_limit_per_s: with API keys, requests per second each key may make (per worker process) before
            it gets 429 with ``Retry-After``; health, metrics and docs are not counted (:mod:`serving.middleware`).
        rate_limit_burst: requests a key may make at once above that rate (the bucket's size).
    """

    model_tag: str = ""
    bundle: str = ""
    api_keys: str = ""
    api_keys_file: str = ""
    max_items: int = 100
    max_history_rows: int = 2000
    max_candidates: int = 60
    max_body_bytes: int = 8_000_000
    max_factors: int = 5
    max_rank_contacts: int = 5
    timeout_s: float = 10.0
    workers: int = 1
    inline_rows: int = 1000
    keepalive_requests: int = 50
    batch_max_items: int = 16
    log_level: str = "INFO"
    runtime_fixes: bool = True
    store: str = ""
    max_event_rows: int = 5000
    prediction_log: str = ""
    prediction_log_max_mb: float = 64.0
    prediction_log_total_mb: float = 1024.0
    follow: str = ""
    rate_limit_per_s: float = 1000.0
    rate_limit_burst: float = 2000.0
    follow_interval_s: float = 2.0

    @property
    def bundle_path(self) -> Path | None:
        return Path(self.bundle) if self.bundle else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (``os.environ`` by default).

    Raises:
        SettingsError: a number that does not parse or is not positive (names the variable).
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        name = PREFIX + f.name.upper()
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        if f.type == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise SettingsError(f"{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")
            values[f.name] = raw.lower() in ("1", "true", "yes", "on")
        elif f.type in ("int", "float"):
            try:
                number = int(raw) if f.type == "int" else float(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r}: expected a {'whole ' if f.type == 'int' else ''}number") from None
            if not number > 0:
                raise SettingsError(f"{name}={raw!r}: must be greater than 0")
            values[f.name] = number
        else:
            values[f.name] = raw
    return Settings(**values)  # type: ignore[arg-type]
