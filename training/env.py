"""Process environment shared by every entry point: privacy defaults and the data directory."""

from __future__ import annotations

import os
from pathlib import Path

# Telemetry is off unless the user explicitly chose otherwise (an already-set value wins).
PRIVACY_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "BENTOML_DO_NOT_TRACK": "True",
}


def apply_privacy_defaults(environ: dict[str, str] | None = None) -> None:
    """Switch off MLflow/BentoML telemetry unless the variable is already set."""
    env = os.environ if environ is None else environ
    for key, value in PRIVACY_DEFAULTS.items():
        env.setdefault(key, value)


def data_home() -> Path:
    """The project's data directory: ``$ACTIVITY_SCORER_HOME`` or ``./.activity-scorer``."""
    return Path(os.environ.get("ACTIVITY_SCORER_HOME", ".activity-scorer")).resolve()


def configure_stores(home: Path | None = None) -> Path:
    """Point BentoML at the data directory and default MLflow to an embedded sqlite store.

    An explicit ``MLFLOW_TRACKING_URI`` or ``BENTOML_HOME`` is left alone.
    """
    home = home or data_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BENTOML_HOME", str(home / "bentoml"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    return home
