"""``activity-scorer rank --data DIR --at DATE --out FILE``: next-best activities for every open deal.

Registered by ``training/cli.py``; the work is :func:`serving.batch_rank.run_batch_rank`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import typer

logger = logging.getLogger(__name__)


def rank(
    data: Path = typer.Option(..., "--data", help="Dataset directory (data contract)."),
    at: str = typer.Option(..., "--at", help="The moment to plan for (ISO 8601): only facts before it are used."),
    out: Path = typer.Option(..., "--out", help="Output file, .csv or .parquet: best first per deal."),
    deals: Path = typer.Option(None, "--deals", help="Only these deals: a CSV with a deal_id column, or one id per "
                                                     "line (default: every deal open at --at)."),
    top_k: int = typer.Option(5, "--top-k", help="Activities per deal."),
    model: str = typer.Option(None, "--model", help="models:/NAME@ALIAS, models:/NAME/V, runs:/RUN_ID or a bundle dir "
                                                     "(default: the champion)."),
    model_name: str = typer.Option(None, "--model-name", help="Registered model name (config: registered_model)."),
    hour_value: float = typer.Option(None, "--hour-value", help="Value of a rep hour in advance probability: the "
                                                                "time cost subtracted from each effect (default 0, or "
                                                                "ACTIVITY_SCORER_RANK_HOUR_VALUE)."),
    negative_cost: float = typer.Option(None, "--negative-cost", help="Cost of a negative response in advance "
                                                                      "probability (default 0.05)."),
    minutes: str = typer.Option(None, "--minutes", help="Rep minutes per type, e.g. call=15,meeting=45 (over the "
                                                        "defaults)."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
) -> None:
    """Rank next-best activities for every open deal at --at (a rep's daily list), best first per deal."""
    from dataclasses import replace

    from features.dataset import DatasetError
    from serving.batch_rank import RankError, run_batch_rank
    from serving.rank_policy import PolicyError, load_policy, parse_minutes
    from training import tracking
    from training.cli import _load_train_config, _parse_date_option, _setup_logging, fail
    from training.env import configure_stores
    from training.report import dumps

    _setup_logging(verbose)
    at_ts = _parse_date_option(at, "--at")
    if not data.is_dir():
        fail(f"--data {data}: no such dataset directory")
    try:
        policy = load_policy()
        if hour_value is not None:
            policy = replace(policy, hour_value=hour_value)
        if negative_cost is not None:
            policy = replace(policy, negative_cost=negative_cost)
        if minutes is not None:
            policy = replace(policy, minutes=parse_minutes(minutes, "--minutes"))
    except PolicyError as err:
        fail(f"rank: {err}")
    cfg = _load_train_config(None, registered_model=model_name)
    configure_stores()
    uri = model or tracking.default_model_uri(cfg.registered_model)
    try:
        with tempfile.TemporaryDirectory(prefix="activity-scorer-rank-") as tmp:
            if Path(uri).is_dir():
                bundle_dir, label = Path(uri), f"bundle:{uri}"
            else:
                try:
                    fetched = tracking.fetch_bundle(uri, Path(tmp))
                except tracking.TrackingError as err:
                    fail(f"rank: --model {uri}: {err}")
                bundle_dir = fetched.path
                label = f"{fetched.name} v{fetched.version}" if fetched.version else uri
            result = run_batch_rank(data, out, at_ts, bundle_dir, label, top_k, deals, policy,
                                    progress=lambda msg: logger.info("%s", msg))
    except (RankError, DatasetError, FileNotFoundError) as err:
        fail(f"rank: {err}")
    if as_json:
        typer.echo(dumps(result.to_dict()))
        return
    typer.echo(f"wrote {result.out}: {result.rows:,} activities for {result.deals:,} open deal(s) at "
               f"{result.at.isoformat()}, ordered by {result.ranked_by}, model {result.model} "
               f"({result.seconds:.1f}s)")
    if result.skipped_closed:
        typer.secho(f"not ranked, not open at {result.at.isoformat()}: {', '.join(result.skipped_closed[:10])}"
                    + (" ..." if len(result.skipped_closed) > 10 else ""), fg=typer.colors.YELLOW, err=True)
