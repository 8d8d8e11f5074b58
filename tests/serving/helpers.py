"""Synthetic data, a trained bundle, request builders and a server launcher for serving tests.

Shared by ``tests/serving`` and ``benchmarks/bench_serving.py``. The bundle is trained with
the real training library (``training.train.run_training``) on a ``make_history`` dataset,
with small settings so it takes about a second.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from features import contract as c
from features.build import build_training_frame, context_to_dict, rep_context, request_items
from features.dataset import Dataset
from tests.features.factory import make_history

ROOT = Path(__file__).resolve().parents[2]
PRIVACY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "True"}
CONTEXT_FILE = "serving_context.json"


def make_dataset(n_activities: int = 6000, seed: int = 1) -> Dataset:
    """A CRM history with enough deals that every label has positives in every time slice."""
    return make_history(n_activities=n_activities, n_deals=n_activities // 20, n_contacts=n_activities // 15,
                        seed=seed, span_days=80)


def small_config():
    """Training settings for a test bundle: few trees, small leaves, no purge (short history)."""
    from training.config import load_config

    return load_config(None, **{
        "lightgbm.num_boost_round": 60, "lightgbm.min_data_in_leaf": 20, "lightgbm.early_stopping_rounds": 20,
        "gates.min_positives": 10, "gates.min_negatives": 10, "gates.min_eval_positives": 2,
        "gates.min_eval_negatives": 2, "splits.purge_before_test": False,
        "calibration.isotonic_min_rows": 100000,
    })


def train_bundle(dataset: Dataset, out: Path) -> Path:
    """Train with the training library and save the bundle (with its serving context) to ``out``."""
    import logging

    from training.data import LoadedData
    from training.train import run_training

    logging.getLogger("models.calibration").setLevel(logging.ERROR)
    table = build_training_frame(dataset)
    loaded = LoadedData(table)
    if hasattr(loaded, "dataset"):
        loaded.dataset = dataset
    result = run_training(loaded, small_config())
    out = Path(out)
    result.bundle.save(out)
    if not (out / CONTEXT_FILE).exists():
        (out / CONTEXT_FILE).write_text(json.dumps(context_to_dict(rep_context(dataset, table))), encoding="utf-8")
    return out


def with_late_activities(dataset: Dataset, n: int = 8, gap_days: int = 30) -> tuple[Dataset, list[str]]:
    """The dataset plus ``n`` new activities ``gap_days`` after its last one (an hour apart).

    Copies of the last activities of the busiest deals, so they have long histories. After
    the gap every earlier outcome horizon has closed, so a serving context taken at the
    first new activity is exactly what the training table knows of each rep at every new
    activity: the condition for the service and the batch scorer to agree to the last bit.
    """
    import pandas as pd

    from features.dataset import coerce_table

    acts = dataset[c.ACTIVITIES]
    start = acts[c.OCCURRED_AT].max() + pd.Timedelta(days=gap_days)
    source = acts.set_index(c.ACTIVITY_ID, drop=False).loc[busy_activity_ids(dataset, n, min_history=20)]
    new = source.copy()
    new[c.ACTIVITY_ID] = [f"late{k}" for k in range(len(new))]
    new[c.OCCURRED_AT] = [start + pd.Timedelta(hours=k) for k in range(len(new))]
    if c.LOGGED_AT in new:
        new[c.LOGGED_AT] = new[c.OCCURRED_AT] + pd.Timedelta(minutes=5)
    tables = dict(dataset.tables)
    tables[c.ACTIVITIES] = coerce_table(c.ACTIVITIES, pd.concat([acts, new.reset_index(drop=True)],
                                                                ignore_index=True))
    return Dataset(tables, dataset.custom_fields, dataset.execution_time_fields), list(new[c.ACTIVITY_ID])


def busy_activity_ids(dataset: Dataset, n: int = 10, min_history: int = 50) -> list[str]:
    """Ids of the last activities of the busiest deals (each has a long history)."""
    acts = dataset[c.ACTIVITIES]
    counts = acts[c.DEAL_ID].value_counts()
    out = []
    for deal in counts.index:
        if counts[deal] < min_history // 2:
            break
        rows = acts[acts[c.DEAL_ID] == deal].sort_values(c.OCCURRED_AT)
        out.append(str(rows[c.ACTIVITY_ID].iloc[-1]))
        if len(out) == n:
            break
    return out


def item_with_history(dataset: Dataset, activity_id: str, n_history: int = 50) -> dict[str, Any]:
    """A ``/score`` item for one activity, its history trimmed to the ``n_history`` latest activities."""
    item = request_items(dataset, [activity_id])[0]
    hist = item["history"]
    before = [r for r in hist[c.ACTIVITIES] if r[c.OCCURRED_AT] < item["activity"][c.OCCURRED_AT]]
    hist[c.ACTIVITIES] = sorted(before, key=lambda r: r[c.OCCURRED_AT])[-n_history:]
    kept = {r[c.ACTIVITY_ID] for r in hist[c.ACTIVITIES]}
    hist[c.RESPONSES] = [r for r in hist.get(c.RESPONSES, []) if r[c.ACTIVITY_ID] in kept]
    return item


def rank_body(item: dict[str, Any], candidates: list[dict[str, Any]] | None = None, top_k: int = 5) -> dict:
    """A ``/rank`` request for the deal of a ``/score`` item, at the item's time."""
    body: dict[str, Any] = {"at": item["activity"][c.OCCURRED_AT], "history": item["history"], "top_k": top_k}
    for key in ("deal", "contact", "account"):
        if key in item:
            body[key] = item[key]
    if candidates is not None:
        body["candidates"] = candidates
    return body


# --- a real server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``bentoml serve serving.service:ActivityScorer`` on a free loopback port, stopped by :meth:`stop`."""

    def __init__(self, bundle: Path, home: Path, env: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / f"server-{self.port}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITY_SCORER_")}
        environ |= PRIVACY_ENV | {"BENTOML_HOME": str(self.home / "bentoml"), "ACTIVITY_SCORER_BUNDLE": str(bundle),
                                  "ACTIVITY_SCORER_HOME": str(self.home), "OMP_NUM_THREADS": "1"}
        environ |= env or {}
        bentoml_cli = Path(sys.executable).parent / "bentoml"
        cmd = [str(bentoml_cli), "serve", "serving.service:ActivityScorer", "--host", "127.0.0.1",
               "--port", str(self.port), "--working-dir", str(ROOT)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(cmd, env=environ, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The arbiter and its worker processes."""
        import psutil

        try:
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(p.pid for p in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()
