"""Loading the bundle the service scores with, and the optional BentoML model-store step.

How a model reaches the service: ``activity-scorer serve`` resolves the MLflow URI
(default ``models:/activity-outcome@champion``) to a local bundle directory with the
training package's tracking code, then starts ``bentoml serve`` with
``ACTIVITY_SCORER_BUNDLE`` pointing at it. The service only ever reads a directory, so
start-up needs no MLflow and no network, and tests point it at a bundle they trained.

For packaging a Bento, ``python -m serving.model_store import DIR`` copies a bundle into
the BentoML model store (``bentoml.models.create``) and prints its tag; starting the
service with ``ACTIVITY_SCORER_MODEL_TAG=<tag>`` then loads it from the store.

The bundle holds ``serving_context.json`` (rep track records, the global prior, custom
fields, time zone: ``features.build.context_to_dict``) when training wrote it. When it does not, the
service derives the custom fields and time zone from the bundle and warns that rep
features will be unknown.

A bundle may also hold ``ranking/``, the ranking model ``/rank`` orders candidates by
(``models.ranking``); without it ``/rank`` orders them by the plan model's ``p_outcome``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features import contract as c
from features import schema as s
from features.build import CustomField, ServingContext, context_from_dict
from models.bundle import CONTEXT_FILE, ModelBundle
from models.effects import EffectModel, load_effects
from models.ranking import RankingModel, load_ranking
from serving.settings import BUNDLE_ENV, MODEL_TAG_ENV, Settings

logger = logging.getLogger(__name__)

STORE_MODEL_NAME = "activity-outcome"
BENTO_MODEL_ARG = "model_tag"  # the Bento argument naming the packed model (training/build_command.py)
PRIVACY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "True"}


class ModelLoadError(RuntimeError):
    """The configured model cannot be found or read (the message says which and why)."""


@dataclass(frozen=True)
class LoadedModel:
    """A bundle ready to serve.

    Attributes:
        bundle: the boosters, calibrators, spec and manifest.
        context: what serving needs beyond a request (reps, prior, custom fields, time zone).
        path: the bundle directory.
        source: where it came from (``bundle:<dir>`` or ``bentoml:<tag>``).
        has_context: False when the bundle had no ``serving_context.json``.
        ranking: the bundle's ranking model (``ranking/``), None when it has none.
        effects: the bundle's effect model (``effects/``): what ``/rank`` orders by when present.
    """

    bundle: ModelBundle
    context: ServingContext
    path: Path
    source: str
    has_context: bool
    ranking: RankingModel | None = None
    effects: EffectModel | None = None

    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` answers: identity, data window, test metrics, features."""
        m = self.bundle.manifest
        metrics = self.bundle.metrics or {}
        test = {
            label: {variant: (fit or {}).get("test", {}) for variant, fit in by_variant.items()}
            for label, by_variant in (metrics.get("labels") or {}).items()
        }
        return {
            "name": m.model_name,
            "version": m.model_version,
            "trained_at": m.trained_at,
            "run_id": m.run_id,
            "source": self.source,
            "data_window": m.data_window,
            "horizons": m.horizons,
            "timezone": m.timezone,
            "labels": list(m.labels),
            "variants": m.variants,
            "test_metrics": test,
            "git_sha": m.git_sha,
            "serving_context": self.has_context,
            "ranking": None if self.ranking is None else {"horizon_days": self.ranking.settings.horizon_days,
                                                          **self.ranking.metrics},
            "effects": None if self.effects is None else self.effects.describe(),
            "features": [
                {"name": f.name, "kind": f.kind, "timing": f.timing, "unit": f.unit, "text": f.text,
                 "levels": len(f.levels) if f.levels is not None else None}
                for f in self.bundle.spec.features
            ],
        }


def _custom_fields_from_spec(bundle: ModelBundle) -> list[CustomField]:
    """Custom fields the bundle's spec uses (``cf_<table>_<column>``)."""
    out = []
    tables = sorted(c.TABLES, key=len, reverse=True)
    for f in bundle.spec.features:
        for table in tables:
            prefix = s.custom_feature_name(table, "")
            if f.name.startswith(prefix) and len(f.name) > len(prefix):
                out.append(CustomField(table, f.name[len(prefix):], f.kind, f.timing))
                break
    return out


def load_bundle_dir(path: Path, source: str | None = None) -> LoadedModel:
    """Load a bundle directory and its serving context.

    Raises:
        ModelLoadError: not a directory, not a bundle, or an unreadable context file.
    """
    from models.bundle import BundleError

    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: no such bundle directory")
    try:
        bundle = ModelBundle.load(path)
    except BundleError as err:
        raise ModelLoadError(str(err)) from None
    if bundle.serving_context is not None:
        try:
            context = context_from_dict(bundle.serving_context)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ModelLoadError(f"{path / CONTEXT_FILE}: unreadable serving context ({err})") from None
        has_context = True
    else:
        context = ServingContext(custom_fields=_custom_fields_from_spec(bundle), timezone=bundle.manifest.timezone)
        has_context = False
        logger.warning("%s has no %s: rep features (team, tenure, track record) will be unknown; "
                       "custom fields and time zone come from the bundle", path, CONTEXT_FILE)
    try:
        ranking = load_ranking(path, bundle.spec)
        effects = load_effects(path, bundle.spec)
    except BundleError as err:
        raise ModelLoadError(str(err)) from None
    if effects is None:
        logger.info("%s has no effect model: /rank orders candidates by %s", path,
                    "the ranking model" if ranking is not None else "the plan model's p_outcome")
    return LoadedModel(bundle, context, path, source or f"bundle:{path}", has_context, ranking, effects)


def load_model(settings: Settings) -> LoadedModel:
    """The bundle named by the settings: a BentoML store tag, else a bundle directory.

    Raises:
        ModelLoadError: neither is set, or the one set cannot be loaded.
    """
    if settings.model_tag:
        path = store_path(settings.model_tag)
        return load_bundle_dir(path, source=f"bentoml:{settings.model_tag}")
    if settings.bundle_path is not None:
        return load_bundle_dir(settings.bundle_path)
    packed = packed_model_tag()
    if packed:  # a built Bento (activity-scorer build): the model it packs, from the Bento's own model store
        return load_bundle_dir(store_path(packed), source=f"bento:{packed}")
    raise ModelLoadError(f"no model configured: set {BUNDLE_ENV} (a bundle directory) or {MODEL_TAG_ENV} "
                         f"(a BentoML model tag), or start the service with `activity-scorer serve`")


def packed_model_tag() -> str | None:
    """The model tag a built Bento was given (``bentoml build --arg model_tag=...``; None outside a Bento)."""
    import bentoml

    return getattr(bentoml.use_arguments(), BENTO_MODEL_ARG, None) or None


def store_path(tag: str) -> Path:
    """Directory of a model in the local BentoML store (never looks anywhere else)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise ModelLoadError(f"BentoML model {tag!r} is not in the local model store "
                             f"(import it with `python -m serving.model_store import DIR`)") from None
    return Path(model.path)


def import_bundle(path: Path, name: str = STORE_MODEL_NAME) -> str:
    """Copy a bundle directory into the BentoML model store; returns the new model's tag.

    Labels carry the registry version and the training-data fingerprint; metadata the
    manifest's identity and data window, so ``bentoml models list`` says what is stored.
    """
    import bentoml

    loaded = load_bundle_dir(Path(path))
    m = loaded.bundle.manifest
    labels = {"model_name": m.model_name, "registry_version": str(m.model_version or ""),
              "fingerprint": m.input_fingerprint[:16]}
    metadata = {"trained_at": m.trained_at, "run_id": m.run_id or "", "data_window": json.dumps(m.data_window),
                "git_sha": m.git_sha}
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        for item in Path(path).iterdir():
            target = Path(model.path) / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
    logger.info("imported %s into the BentoML store as %s", path, model.tag)
    return str(model.tag)


def main(argv: list[str] | None = None) -> int:
    """``python -m serving.model_store import DIR``: print the tag of the imported bundle.

    Like every entry point it switches telemetry off and keeps BentoML's store in the
    project's data directory (``$ACTIVITY_SCORER_HOME/bentoml``) unless told otherwise.
    """
    import os

    for key, value in PRIVACY_ENV.items():
        os.environ.setdefault(key, value)
    home = Path(os.environ.get("ACTIVITY_SCORER_HOME", ".activity-scorer")).resolve()
    os.environ.setdefault("BENTOML_HOME", str(home / "bentoml"))
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] != "import":
        print("usage: python -m serving.model_store import BUNDLE_DIR", file=sys.stderr)
        return 2
    try:
        tag = import_bundle(Path(argv[1]))
    except ModelLoadError as err:
        print(str(err), file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
