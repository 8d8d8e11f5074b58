"""``activity-scorer evaluate-policy``: a new ranker off-policy over the ``/rank`` prediction log.

Registered by ``training/cli.py``; the work is :mod:`reports.offpolicy`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import typer

logger = logging.getLogger(__name__)


def evaluate_policy(
    log: Path = typer.Option(..., "--log", help="The prediction log directory the service wrote "
                                                "(ACTIVITY_SCORER_PREDICTION_LOG; default $ACTIVITY_SCORER_HOME/"
                                                "predictions)."),
    data: Path = typer.Option(..., "--data", help="Dataset directory recorded since (data contract): the advances "
                                                  "that reward each logged decision, and the states a new ranker "
                                                  "re-ranks."),
    bundle: Path = typer.Option(None, "--bundle", help="The new ranker: a bundle directory."),
    model: str = typer.Option(None, "--model", help="The new ranker: NAME[@ALIAS] of a registered model, "
                                                    "models:/NAME@ALIAS, models:/NAME/V or runs:/RUN_ID."),
    by: str = typer.Option(None, "--by", help="The new ranker: order the logged candidates by this logged score "
                                              "(p_outcome, effect, net_effect, rank_score...), without a model."),
    horizon_days: float = typer.Option(None, "--horizon-days", help="An advance within this many days after the "
                                                                    "logged time rewards the decision (default: the "
                                                                    "new bundle's outcome horizon, else 14)."),
    out: Path = typer.Option(None, "--out", help="Also write the figures: .json (everything) or .csv (one row per "
                                                 "value)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples of the states for the 90% "
                                                            "intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    min_matched: int = typer.Option(30, "--min-matched", help="Fewest states whose shown first entry is the new "
                                                              "ranker's first choice for a claimed value."),
    min_events: int = typer.Option(10, "--min-events", help="Fewest advances expected (at the logged mean reward) "
                                                            "among the explored states that showed the new ranker's "
                                                            "choice where it differs from the logged ranker's."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
) -> None:
    """Estimate off-policy (inverse propensity) how a new ranker would have done on the logged /rank states."""
    from features.dataset import DatasetError, load_dataset
    from reports.offpolicy import (
        DEFAULT_HORIZON_DAYS,
        OffPolicyError,
        evaluate_log,
        read_rank_log,
        top1_by_score,
        top1_by_scorer,
        write_evaluation,
    )
    from training.cli import _setup_logging, fail

    _setup_logging(verbose)
    chosen = [name for name, v in (("--bundle", bundle), ("--model", model), ("--by", by)) if v is not None]
    if len(chosen) > 1:
        fail(f"evaluate-policy: give one new ranker, not {' and '.join(chosen)}")
    if bootstrap < 0:
        fail(f"evaluate-policy: --bootstrap {bootstrap}: must be 0 or more")
    if min_matched < 1 or min_events < 1:
        fail(f"evaluate-policy: --min-matched {min_matched} / --min-events {min_events}: must be at least 1")
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        fail(f"evaluate-policy: --out {out}: the file name must end in .json or .csv")
    if not data.is_dir():
        fail(f"evaluate-policy: --data {data}: no such dataset directory")
    try:
        rank_log = read_rank_log(log)
    except OffPolicyError as err:
        fail(f"evaluate-policy: {err}")
    try:
        dataset = load_dataset(data)
    except (DatasetError, FileNotFoundError) as err:
        fail(f"evaluate-policy: --data {data}: {err}")
    with tempfile.TemporaryDirectory(prefix="activity-scorer-offpolicy-") as tmp:
        ranker, top1, bundle_horizon = None, None, None
        if by is not None:
            ranker = f"logged score {by}"
            top1 = lambda decisions: top1_by_score(decisions, by)  # noqa: E731
        elif bundle is not None or model is not None:
            scorer, ranker, bundle_horizon = _scorer(bundle, model, Path(tmp))
            top1 = lambda decisions: top1_by_scorer(decisions, scorer, dataset,  # noqa: E731
                                                    progress=lambda m: logger.info("%s", m))
        horizon = horizon_days if horizon_days is not None else bundle_horizon or DEFAULT_HORIZON_DAYS
        try:
            result = evaluate_log(rank_log, dataset, str(data), ranker, top1, horizon, bootstrap, seed, min_matched,
                                  min_events=min_events)
            if out is not None:
                write_evaluation(result, out)
        except OffPolicyError as err:
            fail(f"evaluate-policy: {err}")
    for line in result.lines():
        typer.echo(line)
    if out is not None:
        typer.echo(f"wrote {out}")


def _scorer(bundle: Path | None, model: str | None, tmp: Path):  # noqa: ANN202
    """The new ranker as a scorer without exploration, its label and its outcome horizon (days)."""
    from serving.model_store import ModelLoadError, load_bundle_dir
    from serving.rank_policy import PolicyError, RankPolicy, load_policy
    from serving.scorer import Scorer
    from training import tracking
    from training.cli import fail
    from training.env import configure_stores

    if bundle is not None:
        where, label = bundle, f"bundle:{bundle}"
        if not bundle.is_dir():
            fail(f"evaluate-policy: --bundle {bundle}: no such bundle directory")
    else:
        assert model is not None
        configure_stores()
        uri = model if ":/" in model or Path(model).is_dir() else (
            f"models:/{model}" if "@" in model else tracking.default_model_uri(model))
        try:
            fetched = tracking.fetch_bundle(uri, tmp)
        except tracking.TrackingError as err:
            fail(f"evaluate-policy: --model {model}: {err}")
        where = fetched.path
        label = f"{fetched.name} v{fetched.version}" if fetched.version else uri
    try:
        loaded = load_bundle_dir(where, source=label)
    except ModelLoadError as err:
        fail(f"evaluate-policy: {'--bundle' if bundle is not None else '--model'} {label}: {err}")
    try:
        policy = load_policy()
    except PolicyError as err:
        fail(f"evaluate-policy: {err}")
    # the ranker's own order: the cost settings of this environment, never exploration
    policy = RankPolicy(policy.hour_value, policy.negative_cost, 0.0, dict(policy.minutes))
    horizons = getattr(loaded.bundle.manifest, "horizons", None) or {}
    return Scorer(loaded, policy=policy), label, horizons.get("outcome_days")
