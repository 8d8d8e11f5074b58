"""``activity-scorer demo``: the README's main job on a simulated dataset.

Steps, each recorded in :class:`DemoResult.steps` (a later step, such as serving, is
one more function appended to :data:`STEPS`):

1. simulate a dataset into ``<data home>/demo`` (reused when one with the same seed, size
   and simulator format version is already there);
2. validate it against the data contract, and load it into the history store (``store.db``);
3. train, calibrate, evaluate, log to MLflow and register a ``challenger``;
4. promote it to ``champion`` through the promotion gate;
5. write the manager report (``activity-scorer report``) into the data home.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.params import DEFAULT_ACTIVITIES
from training.config import TrainConfig
from training.train import Progress

logger = logging.getLogger(__name__)

DEMO_ACTIVITIES = DEFAULT_ACTIVITIES
DEMO_SEED = 0
DEMO_DIR = "demo"


class DemoError(RuntimeError):
    """A demo step failed (the message says which and why)."""


@dataclass
class DemoResult:
    home: Path
    data: Path
    activities: int
    seed: int
    steps: list[tuple[str, str]] = field(default_factory=list)  # (step, one-line outcome)
    train_run: Any = None  # training.workflow.TrainRun
    promotion: Any = None  # training.promote.PromotionDecision
    dataset: Any = None
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _same_simulation(data: Path, activities: int, seed: int) -> bool:
    meta_path = data / "ground_truth.json"
    if not meta_path.exists() or not (data / "activities.parquet").exists():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    from simulator.generate import FORMAT_VERSION

    requested = meta.get("n_activities_requested", meta.get("n_activities"))
    # A dataset written by an older simulator (no or an older format_version) lacks what
    # training now reads (e.g. the ex-ante outcome oracle): simulate again.
    return (meta.get("seed") == seed and requested == activities
            and meta.get("format_version") == FORMAT_VERSION)


def step_simulate(res: DemoResult, cfg: TrainConfig, progress: Progress) -> None:
    if _same_simulation(res.data, res.activities, res.seed):
        res.steps.append(("simulate", f"reused {res.data} (seed {res.seed}, {res.activities:,} activities)"))
        return
    from simulator.generate import simulate, write_simulation
    from simulator.params import SimulationConfig

    progress(f"simulating {res.activities:,} activities (seed {res.seed})")
    sim = simulate(SimulationConfig(n_activities=res.activities, seed=res.seed))
    write_simulation(sim, res.data)
    res.steps.append(("simulate", f"wrote {res.data} ({len(sim.tables['activities']):,} activities, seed {res.seed})"))


def step_validate(res: DemoResult, cfg: TrainConfig, progress: Progress) -> None:
    from features.validation import parse_dataset

    progress("validating the dataset")
    dataset, report = parse_dataset(res.data)
    if dataset is None:
        raise DemoError(f"validate: {res.data}: {report.headline()} (activity-scorer validate --data {res.data})")
    res.dataset = dataset
    res.steps.append(("validate", f"valid: {report.headline()}"))


def step_load(res: DemoResult, cfg: TrainConfig, progress: Progress) -> None:
    """The dataset into the embedded history store of the data home (``activity-scorer load``), so the
    service scores by id and shows the deal page."""
    from store import STORE_FILE, StoreError, open_store

    progress("loading the history store")
    try:
        store = open_store(f"sqlite:///{res.home / STORE_FILE}")
        try:
            counts = store.load_dataset(res.dataset)
        finally:
            store.close()
    except (StoreError, OSError) as err:
        raise DemoError(f"load: {err}") from None
    res.steps.append(("load", f"{counts.get('activities', 0):,} activities into {res.home / STORE_FILE}"))


def step_train(res: DemoResult, cfg: TrainConfig, progress: Progress) -> None:
    from training.train import TrainingRefused
    from training.workflow import train_and_register

    try:
        run = train_and_register(res.data, cfg, progress=progress, dataset=res.dataset)
    except TrainingRefused as err:
        raise DemoError(f"train: refused: {err}") from None
    res.train_run = run
    head = run.result.headline()
    reg = run.registered
    res.steps.append(("train", f"{reg.name} v{reg.version} (challenger): outcome AUC full {head.get('full_auc', float('nan')):.3f}"
                               f", plan {head.get('plan_auc', float('nan')):.3f}; ECE {head.get('full_ece', float('nan')):.3f}"))


def step_promote(res: DemoResult, cfg: TrainConfig, progress: Progress) -> None:
    from training.promote import PromotionError, run_promotion

    with tempfile.TemporaryDirectory(prefix="activity-scorer-promote-") as tmp:
        try:
            decision = run_promotion(cfg, Path(tmp), progress=progress)
        except PromotionError as err:
            raise DemoError(f"promote: {err}") from None
    res.promotion = decision
    if decision.promoted:
        res.steps.append(("promote", f"v{decision.candidate_version} is the champion"
                                     + (f" (was v{decision.champion_version})" if decision.champion_version else "")))
    else:
        res.steps.append(("promote", f"v{decision.candidate_version} not promoted: " + "; ".join(decision.reasons)))


def step_report(res: DemoResult, cfg: TrainConfig, progress: Progress) -> None:
    """The manager report on the champion (``activity-scorer report``), written into the data home."""
    from features.dataset import DatasetError
    from reports.effects_source import EffectSourceError
    from reports.report import ReportError
    from reports.report_command import write_report
    from training.tracking import TrackingError

    out = res.home / "demo-report.html"
    model = None  # the champion
    reg = getattr(res.train_run, "registered", None)
    if reg is not None:
        promoted = res.promotion is None or res.promotion.promoted or getattr(res.promotion, "champion_version", None)
        model = f"models:/{reg.name}@champion" if promoted else f"models:/{reg.name}/{reg.version}"
    try:
        doc = write_report(res.data, out, model=model, json_out=res.home / "demo-report.json", cfg=cfg,
                           progress=progress)
    except (ReportError, EffectSourceError, TrackingError, DatasetError, OSError, ValueError) as err:
        raise DemoError(f"report: {err}") from None
    res.extra["report"] = out
    res.steps.append(("report", f"wrote {out} ({doc['totals']['activities']:,} activities of the last 13 weeks)"))


Step = Callable[[DemoResult, TrainConfig, Progress], None]
STEPS: list[tuple[str, Step]] = [
    ("simulate", step_simulate),
    ("validate", step_validate),
    ("load", step_load),
    ("train", step_train),
    ("promote", step_promote),
    ("report", step_report),
]


def run_demo(home: Path, cfg: TrainConfig, activities: int = DEMO_ACTIVITIES, seed: int = DEMO_SEED,
             progress: Progress | None = None, steps: list[tuple[str, Step]] | None = None) -> DemoResult:
    """Run the demo steps in order; returns what each did.

    Raises:
        DemoError: a step failed.
    """
    progress = progress or (lambda _: None)
    res = DemoResult(Path(home), Path(home) / DEMO_DIR, activities, seed)
    for name, step in steps or STEPS:
        t = time.perf_counter()
        step(res, cfg, progress)
        res.seconds[name] = time.perf_counter() - t
    return res
