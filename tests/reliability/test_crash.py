"""Crash safety: SIGKILL during ``train``, ``promote``, ``load`` and publishing (issue 12).

Each command runs as the CLI does, in its own data home, and is killed with SIGKILL part-way,
at fractions of the time a complete run of the same command took. Afterwards:

- the registry answers, the ``champion`` alias names a version whose bundle downloads and loads
  whole (the old champion, or the new one for ``promote``), and every registered version loads;
- the history store opens, passes SQLite's integrity check and holds either what it held before or
  the whole new dataset, never a part of it;
- the same command then succeeds (no lock or half-written file left in the way).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "activity-scorer")
PRIVACY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "True"}
SMALL_CONFIG = """\
lightgbm:
  num_boost_round: 80
  early_stopping_rounds: 20
  min_data_in_leaf: 20
gates:
  min_positives: 10
  min_negatives: 10
  min_eval_positives: 2
  min_eval_negatives: 2
"""
CHECK_REGISTRY = """
import json, sys, tempfile
from pathlib import Path
from training.env import configure_stores
configure_stores()
from training import tracking
from models.bundle import ModelBundle
out = {"versions": {}, "champion": None}
for mv in tracking._client().search_model_versions("name='activity-outcome'"):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            bundle, fetched = tracking.load_bundle(f"models:/activity-outcome/{mv.version}", Path(tmp))
            out["versions"][mv.version] = "ok"
        except Exception as err:
            out["versions"][mv.version] = f"{type(err).__name__}: {err}"
champ = tracking.get_version("activity-outcome", alias="champion")
if champ is not None:
    with tempfile.TemporaryDirectory() as tmp:
        bundle, fetched = tracking.load_bundle("models:/activity-outcome@champion", Path(tmp))
        out["champion"] = {"version": str(champ.version), "manifest_version": str(bundle.manifest.model_version)}
print(json.dumps(out))
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITY_SCORER_") and k != "MLFLOW_TRACKING_URI"}
    return env | PRIVACY_ENV | {"ACTIVITY_SCORER_HOME": str(home), "PYTHONPATH": str(ROOT)}


def _run(args: list[str], home: Path, timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run([CLI, *args], env=_env(home), capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - started, done


def _killed(args: list[str], home: Path, after_s: float) -> int | None:
    """Run a command and SIGKILL it after ``after_s`` seconds; its return code if it ended before."""
    proc = subprocess.Popen([CLI, *args], env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        return proc.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return None


def _registry(home: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHECK_REGISTRY], env=_env(home), capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def registry_home(tmp_path_factory) -> dict:
    """A data home with a small simulated history, a config, and version 1 trained and promoted (timed)."""
    home = tmp_path_factory.mktemp("crash-home")
    (home / "small.yaml").write_text(SMALL_CONFIG)
    _run(["simulate", "--out", str(home / "data"), "--activities", "6000", "--seed", "3"], home)
    train_s, _ = _run(["train", "--data", str(home / "data"), "--config", str(home / "small.yaml"), "--seed", "1"], home)
    promote_s, _ = _run(["promote", "--version", "1", "--config", str(home / "small.yaml")], home)
    return {"home": home, "train_s": train_s, "promote_s": promote_s}


def _train_args(home: Path, seed: int) -> list[str]:
    return ["train", "--data", str(home / "data"), "--config", str(home / "small.yaml"), "--seed", str(seed)]


def test_train_killed_leaves_the_registry_whole(registry_home):
    home = registry_home["home"]
    for k, fraction in enumerate((0.6, 0.95)):  # mid-fit, and while logging / registering
        code = _killed(_train_args(home, 10 + k), home, registry_home["train_s"] * fraction)
        state = _registry(home)
        assert state["champion"] == {"version": "1", "manifest_version": "1"}, (fraction, code, state)
        assert all(v == "ok" for v in state["versions"].values()), (fraction, state)


def test_promote_killed_leaves_old_or_new_champion_whole(registry_home):
    home = registry_home["home"]
    _run(_train_args(home, 30), home)  # a train after the killed ones: nothing was left in the way
    newest = str(max(int(v) for v in _registry(home)["versions"]))
    before = "1"
    for fraction in (0.5, 0.9):
        args = ["promote", "--version", newest, "--force", "--reason", "crash test", "--config", str(home / "small.yaml")]
        code = _killed(args, home, registry_home["promote_s"] * fraction)
        state = _registry(home)
        champion = state["champion"]
        assert champion["version"] in (before, newest), (fraction, code, state)
        assert champion["manifest_version"] == champion["version"], state  # the bundle of that very version
        assert all(v == "ok" for v in state["versions"].values()), state
    _run(["promote", "--version", newest, "--force", "--reason", "crash test: after", "--config",
          str(home / "small.yaml")], home)
    assert _registry(home)["champion"]["version"] == newest


def _counts(db: Path) -> tuple[str, dict[str, int]]:
    con = sqlite3.connect(db)
    try:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables  # noqa: S608
                  if t in ("activities", "responses", "deal_stages", "outcomes", "deals", "contacts", "accounts")}
    finally:
        con.close()
    return check, counts


def test_load_killed_leaves_the_store_as_before_or_whole(tmp_path):
    home = tmp_path / "home"
    _run(["simulate", "--out", str(tmp_path / "small"), "--activities", "3000", "--seed", "1"], home)
    _run(["simulate", "--out", str(tmp_path / "big"), "--activities", "80000", "--seed", "2"], home)
    reference = tmp_path / "reference.db"  # small, then big, uninterrupted: what a whole second load gives
    _run(["load", "--data", str(tmp_path / "small"), "--store", f"sqlite:///{reference}"], home)
    load_s, _ = _run(["load", "--data", str(tmp_path / "big"), "--store", f"sqlite:///{reference}"], home)
    _, merged = _counts(reference)
    for k, fraction in enumerate((0.5, 0.9)):
        db = tmp_path / f"store{k}.db"
        _run(["load", "--data", str(tmp_path / "small"), "--store", f"sqlite:///{db}"], home)
        _, before = _counts(db)
        code = _killed(["load", "--data", str(tmp_path / "big"), "--store", f"sqlite:///{db}"], home, load_s * fraction)
        check, after = _counts(db)
        assert check == "ok", check
        assert after in (before, merged), (fraction, code, before, after, merged)
        _run(["load", "--data", str(tmp_path / "big"), "--store", f"sqlite:///{db}"], home)  # and it loads again
        assert _counts(db)[1] == merged


def test_publish_killed_leaves_the_pointer_whole(tmp_path):
    """The pointer the service follows is replaced atomically: a writer killed mid-way leaves the old one."""
    pointer = tmp_path / "pointer.json"
    script = (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "from training.follow import write_atomically\n"
        "p = Path(sys.argv[1])\n"
        "for k in range(10**9):\n"
        "    write_atomically(p, json.dumps({'bundle': '/b/v%d' % k, 'version': str(k), 'pad': 'x' * 200000}))\n")
    write_env = _env(tmp_path) | {"PYTHONPATH": str(ROOT)}
    for delay in (0.3, 0.7, 1.1):
        proc = subprocess.Popen([sys.executable, "-c", script, str(pointer)], env=write_env, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        data = json.loads(pointer.read_text())  # always a whole JSON document
        assert data["bundle"] == f"/b/v{data['version']}"
