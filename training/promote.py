"""Promotion: move the ``champion`` alias to a candidate only if it is at least as good.

Both models are scored on the SAME recent window of the SAME data, with the same
labels: by default the candidate's own test window (rebuilt from the dataset it was
trained on, known from its manifest, or ``--data``), or the last
``promotion.window_days`` days of the dataset. For each gated label and variant
(config ``promotion.gate_labels`` x ``gate_variants``):

- candidate AUC >= champion AUC - ``auc_tolerance``;
- candidate ECE <= champion ECE + ``ece_tolerance``;
- absolute gates: candidate AUC >= ``min_auc`` and ECE <= ``max_ece`` (with no champion
  yet, these alone decide).

``force`` promotes anyway and records ``forced_promotion=true``, who and why, as tags on
the model version and on its training run.

The tags are written before the alias moves: the alias is the commit point, so a crash or a
registry error part-way leaves ``champion`` on the previous version, never on a version whose
tags do not record its promotion.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features.schema import LABELS, LEAK_FLAG
from models.bundle import BundleInputError, ModelBundle
from models.metrics import binary_metrics
from training import data as data_mod
from training import tracking
from training.config import Horizons, TrainConfig
from training.purge import fill_settled_labels, settle_days
from training.train import Progress, evaluation_bundle_of

logger = logging.getLogger(__name__)


class PromotionError(RuntimeError):
    """Promotion cannot even be evaluated (no candidate, no data, unreadable model...)."""


@dataclass(frozen=True)
class GateCheck:
    label: str
    variant: str
    metric: str  # auc | ece
    candidate: float
    champion: float | None
    limit: float
    ok: bool
    rule: str


@dataclass
class PromotionDecision:
    """What promote measured and decided."""

    name: str
    candidate_version: str
    champion_version: str | None
    window: dict[str, Any]
    candidate_metrics: dict[str, dict[str, dict[str, float]]]  # label -> variant -> metrics
    champion_metrics: dict[str, dict[str, dict[str, float]]] | None
    checks: list[GateCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    promoted: bool = False
    forced: bool = False
    already_champion: bool = False

    @property
    def passed(self) -> bool:
        return all(ch.ok for ch in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [ch.rule for ch in self.checks if not ch.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "candidate_version": self.candidate_version,
            "champion_version": self.champion_version,
            "window": self.window,
            "passed": self.passed,
            "promoted": self.promoted,
            "forced": self.forced,
            "already_champion": self.already_champion,
            "reasons": self.reasons,
            "warnings": self.warnings,
            "checks": [ch.__dict__ for ch in self.checks],
            "candidate_metrics": self.candidate_metrics,
            "champion_metrics": self.champion_metrics,
        }


def score_window(bundle: ModelBundle, frame: pd.DataFrame, labels: list[str], variants: list[str]
                 ) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of a bundle on the labelled rows of ``frame`` (outcome rows logged late excluded)."""
    matrix = bundle.encode(frame)
    out: dict[str, dict[str, dict[str, float]]] = {}
    leak = frame[LEAK_FLAG].to_numpy(dtype=bool, na_value=False) if LEAK_FLAG in frame.columns else None
    for variant in variants:
        proba = bundle.predict_proba(matrix, variant)
        for label in labels:
            if label not in proba:
                continue
            y = frame[LABELS[label]].to_numpy(dtype=np.float64, na_value=np.nan)
            keep = ~np.isnan(y)
            if label == "outcome" and leak is not None:
                keep &= ~leak
            out.setdefault(label, {})[variant] = binary_metrics(y[keep], proba[label][keep])
    return out


def gate(candidate: dict, champion: dict | None, cfg: TrainConfig) -> list[GateCheck]:
    """The promotion checks for every gated (label, variant)."""
    p = cfg.promotion
    checks = []
    for label in p.gate_labels:
        for variant in p.gate_variants:
            cm = candidate.get(label, {}).get(variant)
            if cm is None:
                checks.append(GateCheck(label, variant, "auc", math.nan, None, math.nan, False,
                                        f"{label}/{variant}: the candidate has no such model"))
                continue
            hm = (champion or {}).get(label, {}).get(variant)
            c_auc, c_ece = cm["auc"], cm["ece"]
            name = f"{label}/{variant}"
            if math.isnan(c_auc):
                checks.append(GateCheck(label, variant, "auc", c_auc, None, math.nan, False,
                                        f"{name}: the window has a single class, AUC is undefined"))
                continue
            checks.append(GateCheck(label, variant, "auc", c_auc, None, p.min_auc, c_auc >= p.min_auc,
                                    f"{name}: AUC {c_auc:.4f} below the minimum {p.min_auc}"))
            checks.append(GateCheck(label, variant, "ece", c_ece, None, p.max_ece, c_ece <= p.max_ece,
                                    f"{name}: ECE {c_ece:.4f} above the maximum {p.max_ece}"))
            if hm is not None:
                lim = hm["auc"] - p.auc_tolerance
                checks.append(GateCheck(label, variant, "auc", c_auc, hm["auc"], lim, c_auc >= lim,
                                        f"{name}: AUC {c_auc:.4f} is more than {p.auc_tolerance} below "
                                        f"the champion's {hm['auc']:.4f}"))
                lim = hm["ece"] + p.ece_tolerance
                checks.append(GateCheck(label, variant, "ece", c_ece, hm["ece"], lim, c_ece <= lim,
                                        f"{name}: ECE {c_ece:.4f} is worse than the champion's "
                                        f"{hm['ece']:.4f} + {p.ece_tolerance}"))
    return checks


def config_for_bundle(cfg: TrainConfig, bundle: ModelBundle) -> TrainConfig:
    """``cfg`` with the horizons and time zone the bundle was trained with (features built alike)."""
    h = bundle.manifest.horizons
    return replace(cfg, horizons=Horizons(int(h.get("outcome_days", 14)), int(h.get("output_days", 7))),
                   timezone=bundle.manifest.timezone)


def run_promotion(
    cfg: TrainConfig,
    workdir: Path,
    version: str | None = None,
    data: Path | None = None,
    force: bool = False,
    reason: str | None = None,
    progress: Progress | None = None,
) -> PromotionDecision:
    """Compare a candidate (``version``, default the ``challenger``) with the champion and maybe promote.

    Args:
        cfg: promotion settings and the registered model name.
        workdir: scratch directory for downloaded bundles.
        version: registered version to promote (default: the ``challenger`` alias).
        data: dataset directory for the comparison window (default: the candidate's own).
        force: promote even when the gate fails (recorded as ``forced_promotion=true``).
        reason: why (recorded with a forced promotion).
        progress: called with a short message at each long step.

    Raises:
        PromotionError: no candidate, no usable data, or a model that cannot score the window.
    """
    progress = progress or (lambda _: None)
    name = cfg.registered_model
    if version is not None:
        try:
            cand_mv = tracking.get_version(name, version=version)
        except tracking.TrackingError as err:
            raise PromotionError(str(err)) from None
    else:
        cand_mv = tracking.get_version(name, alias=tracking.CHALLENGER)
        if cand_mv is None:
            raise PromotionError(f"registered model {name!r} has no {tracking.CHALLENGER!r}: run `activity-scorer train` "
                                 "first, or name a version with --version")
    cand_version = str(cand_mv.version)
    champ_mv = tracking.get_version(name, alias=tracking.CHAMPION)
    champ_version = str(champ_mv.version) if champ_mv is not None else None
    if champ_version == cand_version:
        return PromotionDecision(name, cand_version, champ_version, {}, {}, None, already_champion=True)

    progress(f"fetching version {cand_version}" + (f" and champion {champ_version}" if champ_version else ""))
    # Like with like: a bundle refit for deployment has seen its own test window, so the gate
    # scores the models of each version's time-ordered evaluation (bundle/evaluation), which
    # were fit only on data before their test window; a bundle without one is its own.
    try:
        _, fetched = tracking.load_bundle(f"models:/{name}/{cand_version}", Path(workdir) / "candidate")
        candidate = evaluation_bundle_of(fetched.path)
        champion = None
        if champ_version is not None:
            _, fetched = tracking.load_bundle(f"models:/{name}/{champ_version}", Path(workdir) / "champion")
            champion = evaluation_bundle_of(fetched.path)
    except tracking.TrackingError as err:
        raise PromotionError(str(err)) from None

    warnings: list[str] = []
    source = data or (candidate.manifest.extra or {}).get("source") or cand_mv.tags.get(tracking.TAG_DATA_PATH)
    if not source:
        raise PromotionError(f"version {cand_version} does not record its dataset; pass --data DIR")
    source = Path(source)
    if not source.is_dir():
        raise PromotionError(f"dataset {source} (recorded with version {cand_version}) does not exist; pass --data DIR")
    bcfg = config_for_bundle(cfg, candidate)
    if champion is not None:
        if champion.manifest.horizons != candidate.manifest.horizons:
            warnings.append(f"champion was trained with horizons {champion.manifest.horizons}; both are judged on the "
                            f"candidate's {candidate.manifest.horizons}")
        if champion.manifest.timezone != candidate.manifest.timezone:
            warnings.append(f"champion uses time zone {champion.manifest.timezone}, the candidate "
                            f"{candidate.manifest.timezone}; features are built with the candidate's")

    window = dict(candidate.manifest.data_window)
    progress(f"building features for the comparison window from {source}")
    if cfg.promotion.window_days is None:
        until = data_mod.parse_date(window.get("until"))
        loaded = data_mod.load_table(source, bcfg, until)
        start = pd.Timestamp(window["test_start"])
        end = pd.Timestamp(window["data_end"])
        what = "the candidate's test window"
    else:
        loaded = data_mod.load_table(source, bcfg, None)
        end = pd.Timestamp(loaded.table.data_end)
        start = end - pd.Timedelta(days=cfg.promotion.window_days)
        what = f"the last {cfg.promotion.window_days} days of the data"
    frame = loaded.table.frame
    horizons = {"outcome_days": bcfg.horizons.outcome_days, "output_days": bcfg.horizons.output_days}
    frame = data_mod.censor_labels(frame, end, horizons)
    # labels that settle sooner than their horizon (a flat campaign export) are known as in training
    settles = settle_days(loaded.dataset, horizons, list(candidate.labels), cfg.splits.purge_settled_labels, end)
    frame, _ = fill_settled_labels(frame, loaded.dataset, settles, end, {lab: LABELS[lab] for lab in candidate.labels})
    occurred = frame[c.OCCURRED_AT]
    frame = frame[((occurred >= start) & (occurred < end)).to_numpy(dtype=bool)]
    if champion is not None:
        champ_test = champion.manifest.data_window.get("test_start")
        if champ_test and pd.Timestamp(champ_test) > start:
            warnings.append(f"the champion was fitted on data up to {champ_test[:19]}, inside the window: its "
                            "scores there may be optimistic")
    labels = [lab for lab in candidate.labels]
    variants = sorted(set(cfg.promotion.gate_variants) | {"full", "plan"})
    progress(f"scoring {len(frame):,} activities with both models")
    try:
        cand_metrics = score_window(candidate, frame, labels, variants)
        champ_metrics = score_window(champion, frame, labels, variants) if champion is not None else None
    except BundleInputError as err:
        raise PromotionError(f"cannot score the window: {err}") from None
    decision = PromotionDecision(
        name, cand_version, champ_version,
        {"start": start.isoformat(), "end": end.isoformat(), "data": str(source), "rows": int(len(frame)),
         "what": what, "models": "each version's evaluation models (fit before its test window)"},
        cand_metrics, champ_metrics, gate(cand_metrics, champ_metrics, cfg), warnings,
    )
    if decision.passed or force:
        _promote(decision, cand_mv.run_id, force and not decision.passed, reason)
    else:
        logger.info("promotion of %s v%s refused: %s", name, cand_version, "; ".join(decision.reasons))
    return decision


def _promote(decision: PromotionDecision, run_id: str | None, forced: bool, reason: str | None) -> None:
    now = pd.Timestamp.now(tz="UTC").isoformat()
    user = tracking.current_user()
    tags = {
        "promoted_at": now,
        "promoted_by": user,
        "previous_champion": decision.champion_version or "",
        "forced_promotion": "true" if forced else "false",
        "promotion_window": f"{decision.window.get('start')}..{decision.window.get('end')}",
    }
    if forced:
        tags["forced_reason"] = reason or "(no reason given)"
        tags["forced_failed_checks"] = "; ".join(decision.reasons)[:4000]
        logger.warning("FORCED promotion of %s v%s by %s despite: %s", decision.name, decision.candidate_version,
                       user, "; ".join(decision.reasons))
    # the alias is the commit point: a service following it may load the version at once, so the
    # version's record (who, when, forced or not) is written first; a failure before the alias
    # moves leaves the champion where it was (a version tagged promoted_at without the alias is
    # an interrupted promotion)
    from mlflow.exceptions import MlflowException

    try:
        tracking.tag_version(decision.name, decision.candidate_version, tags)
        tracking.tag_run(run_id, tags)
    except (MlflowException, OSError) as err:
        raise PromotionError(
            f"the registry failed while recording the promotion of {decision.name} v{decision.candidate_version}, "
            f"before the {tracking.CHAMPION} alias moved: it still points where it did; run promote again ({err})"
        ) from None
    try:
        tracking.set_alias(decision.name, tracking.CHAMPION, decision.candidate_version)
    except (MlflowException, OSError) as err:
        raise PromotionError(
            f"the registry failed while moving the {tracking.CHAMPION} alias to {decision.name} "
            f"v{decision.candidate_version}: it still points where it did, though v{decision.candidate_version}'s "
            f"tags record the promotion; run promote again ({err})"
        ) from None
    decision.promoted = True
    decision.forced = forced
    logger.info("promoted %s v%s to %s (previous %s)", decision.name, decision.candidate_version, tracking.CHAMPION,
                decision.champion_version)
