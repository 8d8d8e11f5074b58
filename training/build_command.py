"""``activity-scorer build [--model URI]``: the service and the champion packed into a Bento.

1. The model (default: the champion) is fetched from MLflow as ``serve`` fetches it.
2. Its bundle is copied into the BentoML model store (``python -m serving.model_store import``:
   training never imports serving).
3. ``bentoml build`` runs with the project's ``bentofile.yaml`` plus that model (packed into
   the Bento) and the argument ``model_tag`` naming it, which the service reads when it runs
   from the Bento (``serving.model_store.packed_model_tag``). No package is resolved or
   downloaded (``lock_packages: false``; the versions are those of ``constraints.txt``).

``bentoml serve activity-scorer:<version>`` then serves it without MLflow.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = ROOT / "bentofile.yaml"
MODEL_ARG = "model_tag"  # serving.model_store.BENTO_MODEL_ARG


class BuildError(RuntimeError):
    """A step of the build failed (the message names it and BentoML's last words)."""


def _run(cmd: list[str], env: dict[str, str], step: str) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise BuildError(f"{step} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout


def build_bento(bundle: Path, bentofile: Path = BENTOFILE, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Pack ``bundle`` and the service into a Bento.

    Args:
        bundle: a model bundle directory.
        bentofile: the build file (its ``models`` and ``args`` are extended, never replaced).
        env: the environment of the BentoML commands (``BENTOML_HOME`` says which stores).

    Returns:
        (the Bento's tag, the packed model's tag).

    Raises:
        BuildError: the bentofile is unreadable, or importing the model or building failed.
    """
    import yaml

    env = dict(os.environ if env is None else env)
    try:
        spec = yaml.safe_load(Path(bentofile).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise BuildError(f"{bentofile}: cannot read the build file ({err})") from None
    if not isinstance(spec, dict) or "service" not in spec:
        raise BuildError(f"{bentofile}: not a bentofile (no 'service' key)")
    out = _run([sys.executable, "-m", "serving.model_store", "import", str(bundle)], env,
               "importing the model into the BentoML store")
    model_tag = out.strip().splitlines()[-1].strip()
    spec["models"] = [*(spec.get("models") or []), model_tag]
    spec["args"] = {**(spec.get("args") or {}), MODEL_ARG: model_tag}
    with tempfile.TemporaryDirectory(prefix="activity-scorer-build-") as tmp:
        path = Path(tmp) / "bentofile.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        bentoml = str(Path(sys.executable).parent / "bentoml")
        out = _run([bentoml, "build", "-f", str(path), "-o", "tag", str(ROOT)], env, "bentoml build")
    tags = [line.split("__tag__:", 1)[1].strip() for line in out.splitlines() if "__tag__:" in line]
    if not tags:
        raise BuildError(f"bentoml build printed no tag: {out.strip()[-200:]!r}")
    logger.info("built Bento %s with model %s", tags[-1], model_tag)
    return tags[-1], model_tag


def build(
    model: str = typer.Option(None, "--model", help="models:/NAME@ALIAS, models:/NAME/V, runs:/RUN_ID or a bundle dir "
                                                     "(default: the champion)."),
    bentofile: Path = typer.Option(None, "--bentofile", help="The build file (default: the project's bentofile.yaml)."),
) -> None:
    """Pack the service and the champion (or --model) into a Bento; `bentoml serve <tag>` serves it."""
    from training.cli import _serving_bundle, fail
    from training.env import configure_stores

    home = configure_stores()
    bundle, label = _serving_bundle(model, home)
    try:
        bento, model_tag = build_bento(bundle, bentofile or BENTOFILE)
    except BuildError as err:
        fail(f"build: {err}")
    typer.echo(f"built Bento {bento} with {label} (BentoML model {model_tag}) in {os.environ['BENTOML_HOME']}")
    typer.echo(f"serve it: BENTOML_HOME={os.environ['BENTOML_HOME']} bentoml serve {bento} --host 127.0.0.1 --port 3000")
    typer.echo(f"image (needs Docker or another OCI builder; none here): bentoml containerize {bento}")
