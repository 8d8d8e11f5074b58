"""Every MLflow call of the project lives here: runs, the registry, aliases, fetching bundles.

The tracking store comes from ``MLFLOW_TRACKING_URI``; the CLI calls
``training.env.configure_stores()`` first, which defaults it to an embedded sqlite
store in the data home (no server). Experiments created on a local sqlite store keep
their artifacts next to the database (``<data home>/mlartifacts``) rather than in the
current directory. The same code works against a tracking server.

Registry conventions: one registered model (``registered_model`` in the config,
default ``activity-outcome``); every training run registers a new version and points
the alias ``challenger`` at it; ``promote`` moves ``champion``. No stages.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_ARTIFACT = "model"  # the logged pyfunc model's name
BUNDLE_RUN_ARTIFACT = "bundle"  # the same bundle as a plain run artifact (runs:/<id>/bundle)
TAG_DATA_PATH = "data.path"


class TrackingError(RuntimeError):
    """A model URI cannot be resolved, a version or alias does not exist, etc."""


@dataclass(frozen=True)
class RegisteredRun:
    run_id: str
    experiment_id: str
    model_uri: str  # the logged pyfunc model
    name: str
    version: str


@dataclass(frozen=True)
class FetchedBundle:
    """A bundle copied to a local directory, with where it came from in the registry."""

    path: Path
    uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def _local_artifact_root(uri: str) -> str | None:
    """``<db dir>/mlartifacts`` as a file URI for a local sqlite store, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(unquote(uri[len("sqlite:///"):]))
    return (db.parent / "mlartifacts").resolve().as_uri()


def ensure_experiment(name: str) -> str:
    """Id of the experiment ``name``, created (with a local artifact root if sqlite) when absent."""
    import mlflow

    client = _client()
    with _quiet("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..."
        exp = client.get_experiment_by_name(name)
    if exp is None:
        root = _local_artifact_root(tracking_uri())
        exp_id = client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def _metric_key(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", "_".join(parts))


def flatten_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Bundle metrics -> MLflow metric names like ``outcome_full_auc`` / ``outcome_full_type_call_auc``."""
    out: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            out[key] = float(value)

    for label, by_variant in metrics.get("labels", {}).items():
        for variant, m in by_variant.items():
            for k, v in m.get("test", {}).items():
                put(_metric_key(label, variant, k), v)
            for k, v in m.get("truth", {}).items():
                put(_metric_key(label, variant, k), v)
            put(_metric_key(label, variant, "best_iteration"), m.get("best_iteration"))
            for t, tm in m.get("by_type", {}).items():
                for k in ("n", "base_rate", "auc", "ece", "lift_top_decile"):
                    put(_metric_key(label, variant, "type", t, k), tm.get(k))
    for key, d in metrics.get("deployed", {}).items():  # the refit for deployment (training.train)
        if isinstance(d, dict):
            for k in ("rows", "trees", "calibration_rows", "crossfit_auc"):
                put(_metric_key("deployed", *key.split("/"), k), d.get(k))
    for label, by_slice in metrics.get("counts", {}).items():
        for slice_name, k in by_slice.items():
            put(_metric_key("rows", label, slice_name, "positives"), k["positives"])
            put(_metric_key("rows", label, slice_name, "negatives"), k["negatives"])
    return out


def log_training(
    result,
    bundle_dir: Path,
    example_frame,
    data_path: Path | None,
    plots: list[Path],
    extra_tags: dict[str, str] | None = None,
) -> RegisteredRun:
    """Log a training run, its bundle as a pyfunc model, register a version and alias it ``challenger``.

    Args:
        result: a :class:`training.train.TrainingResult`.
        bundle_dir: the saved bundle directory.
        example_frame: training-table rows; a few become the model's input example.
        data_path: the dataset directory trained on (stored so ``promote`` can re-score).
        plots: PNG files to log under ``plots/``.
        extra_tags: more run tags.
    """
    from models.pyfunc import BUNDLE_ARTIFACT

    cfg = result.config
    bundle = result.bundle
    exp_id = ensure_experiment(cfg.experiment)
    window = bundle.manifest.data_window
    tags = {
        TAG_DATA_PATH: str(data_path) if data_path else "",
        "data.fingerprint": result.fingerprint,
        "data.start": window.get("data_start", ""),
        "data.test_start": window.get("test_start", ""),
        "data.end": window.get("data_end", ""),
        "data.until": window.get("until") or "",
        "git_sha": bundle.manifest.git_sha,
        "leakage.dropped": ",".join(result.leakage.dropped),
        "variants": json.dumps(bundle.manifest.variants),
    } | (extra_tags or {})
    with tempfile.TemporaryDirectory(prefix="activity-scorer-log-") as tmp:
        staged = Path(tmp) / BUNDLE_ARTIFACT  # MLflow files an artifact directory under its own name
        shutil.copytree(bundle_dir, staged)
        run, info, version = _log_and_register(result, staged, example_frame, plots, exp_id, tags)
    return RegisteredRun(run.info.run_id, exp_id, info.model_uri, cfg.registered_model, str(version.version))


def _log_and_register(result, bundle_dir: Path, example_frame, plots: list[Path], exp_id: str, tags: dict):
    import mlflow

    from models.pyfunc import BUNDLE_ARTIFACT, ActivityScorerModel, input_example, signature_for

    cfg = result.config
    bundle = result.bundle
    with mlflow.start_run(experiment_id=exp_id, tags=tags) as run:
        params = {k: (json.dumps(v) if isinstance(v, list) else v) for k, v in cfg.flat().items()}
        params |= {"n_rows": result.n_rows, "n_features": len(result.features_used)}
        mlflow.log_params(params)
        mlflow.log_dict(bundle.metrics, "metrics.json")
        mlflow.log_dict(result.leakage.to_dict(), "leakage.json")
        for p in plots:
            mlflow.log_artifact(str(p), artifact_path="plots")
        mlflow.log_artifacts(str(bundle_dir), artifact_path=BUNDLE_RUN_ARTIFACT)
        with _quiet("mlflow.pyfunc", "mlflow.models"):  # the cloudpickle notice: we pickle by reference on purpose
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=ActivityScorerModel(),
                artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                signature=signature_for(bundle),
                input_example=input_example(bundle, example_frame),
                pip_requirements=pip_requirements(),
            )
        flat = flatten_metrics(bundle.metrics)
        mlflow.log_metrics(flat, model_id=info.model_id)
        version = mlflow.register_model(
            info.model_uri, cfg.registered_model,
            tags={"run_id": run.info.run_id, TAG_DATA_PATH: tags[TAG_DATA_PATH],
                  "data.test_start": tags["data.test_start"], "data.end": tags["data.end"]},
        )
        _client().set_registered_model_alias(cfg.registered_model, CHALLENGER, version.version)
        logger.info("run %s registered %s version %s as %s", run.info.run_id, cfg.registered_model,
                    version.version, CHALLENGER)
    return run, info, version


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Raise the named loggers to ERROR for a block (MLflow's INFO chatter on routine calls)."""
    saved = [(name, logging.getLogger(name).level) for name in loggers]
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved:
            logging.getLogger(name).setLevel(level)


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc (given explicitly: MLflow's inference takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("activity-scorer", "lightgbm", "numpy", "pandas", "pyarrow", "mlflow", "scikit-learn"):
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            continue
    return out


# --- registry ------------------------------------------------------------------------------


def get_version(name: str, version: str | None = None, alias: str | None = None):
    """A ModelVersion by number or alias; None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        if version is not None:
            return client.get_model_version(name, str(version))
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if version is not None:
            raise TrackingError(f"registered model {name!r} has no version {version}") from None
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(err, "error_code", "")) or "not found" in str(err).lower() \
                or "does not exist" in str(err).lower():
            return None
        raise


def set_alias(name: str, alias: str, version: str) -> None:
    _client().set_registered_model_alias(name, alias, str(version))


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    client = _client()
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, str(v))


def tag_run(run_id: str | None, tags: dict[str, str]) -> None:
    if not run_id:
        return
    client = _client()
    for k, v in tags.items():
        client.set_tag(run_id, k, str(v))


def run_tags(run_id: str | None) -> dict[str, str]:
    if not run_id:
        return {}
    return dict(_client().get_run(run_id).data.tags)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- fetching bundles ------------------------------------------------------------------------

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))?/?$")


def default_model_uri(name: str) -> str:
    return f"models:/{name}@{CHAMPION}"


def _find_bundle_dir(root: Path) -> Path | None:
    from models.bundle import MANIFEST_FILE

    for candidate in (root, root / "artifacts" / "bundle", root / "bundle"):
        if (candidate / MANIFEST_FILE).exists():
            return candidate
    found = sorted((root / "artifacts").glob(f"*/{MANIFEST_FILE}")) if (root / "artifacts").is_dir() else []
    return found[0].parent if found else None


def fetch_bundle(uri: str, dst: Path) -> FetchedBundle:
    """Copy the bundle a URI points at into ``dst`` and say which registry version it is.

    Accepts ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID[/bundle]``,
    any other MLflow artifact URI of a logged model, or a local directory (a bundle, or a
    downloaded pyfunc model holding one). The copied manifest gets the registry version.

    Raises:
        TrackingError: the URI, alias or version does not resolve, or holds no bundle.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.bundle import MANIFEST_FILE

    dst = Path(dst)
    local = Path(uri).expanduser()
    if "://" not in uri and ":/" not in uri[:10]:
        if not local.exists():
            raise TrackingError(f"{uri}: no such bundle directory or model URI")
        found = _find_bundle_dir(local)
        if found is None:
            raise TrackingError(f"{uri}: not a model bundle (no {MANIFEST_FILE})")
        target = dst / "bundle"
        shutil.copytree(found, target, dirs_exist_ok=True)
        return FetchedBundle(target, uri)
    name = version = run_id = None
    artifact_uri = uri
    m = _MODELS_URI.match(uri)
    if m and not m.group("name").startswith("m-"):
        name = m.group("name")
        if m.group("version"):
            mv = get_version(name, version=m.group("version"))
        else:
            alias = m.group("alias") or CHAMPION
            mv = get_version(name, alias=alias)
            if mv is None:
                hint = " (run `activity-scorer promote` first)" if alias == CHAMPION else ""
                raise TrackingError(f"registered model {name!r} has no alias {alias!r}{hint}")
        version, run_id = str(mv.version), mv.run_id
        artifact_uri = f"models:/{name}/{version}"
    elif uri.startswith("runs:/"):
        parsed = urlparse(uri)
        parts = [p for p in parsed.path.split("/") if p]
        if not parts:
            raise TrackingError(f"{uri}: expected runs:/<run_id>[/path]")
        run_id = parts[0]
        if len(parts) == 1:
            artifact_uri = f"runs:/{run_id}/{BUNDLE_RUN_ARTIFACT}"
    try:
        downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(dst)))
    except (MlflowException, OSError) as err:
        raise TrackingError(f"{uri}: cannot download the model ({str(err).splitlines()[0]})") from None
    found = _find_bundle_dir(downloaded)
    if found is None:
        raise TrackingError(f"{uri}: holds no model bundle")
    if version is not None:
        manifest_path = found / MANIFEST_FILE
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest.update({"model_name": name, "model_version": version, "run_id": run_id})
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return FetchedBundle(found, uri, name, version, run_id)


def load_bundle(uri: str, dst: Path | None = None):
    """Fetch and load a bundle (see :func:`fetch_bundle`); returns ``(ModelBundle, FetchedBundle)``."""
    from models.bundle import ModelBundle

    if dst is None:
        dst = Path(tempfile.mkdtemp(prefix="activity-scorer-bundle-"))
    fetched = fetch_bundle(uri, dst)
    return ModelBundle.load(fetched.path), fetched
