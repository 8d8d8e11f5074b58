"""The ``activity-scorer`` command line (one Typer app).

Each command reads options, calls a library function, prints a short summary and
sets the exit code. The logic lives in the library so tests and notebooks call
the same functions.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from simulator.params import DEFAULT_ACTIVITIES
from training.env import apply_privacy_defaults

apply_privacy_defaults()
# LightGBM's OpenMP threads sleep instead of spinning when idle: on a shared 2-core machine
# spinning threads slow training down by an order of magnitude. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="activity-scorer",
    help="Learn which sales activities advance customer outcomes; score and rank them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def fail(message: str, code: int = 1) -> None:
    """Print one clear line to stderr and exit non-zero (never a traceback)."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _register_commands() -> None:
    from importers.cli import register as register_importers
    from reports.monitor_command import monitor
    from reports.report_command import report
    from training.recalibrate import recalibrate
    from serving.rank_command import rank
    from reports.offpolicy_command import evaluate_policy
    from simulator.command import simulate
    from store.command import load
    from training.build_command import build

    app.command("simulate")(simulate)
    app.command("load")(load)
    app.command("build")(build)
    app.command("report")(report)
    app.command("monitor")(monitor)
    app.command("recalibrate")(recalibrate)
    app.command("rank")(rank)
    app.command("evaluate-policy")(evaluate_policy)
    register_importers(app)


@app.command()
def validate(data: Path = typer.Option(..., "--data", help="Dataset directory (CSV or Parquet per table).")) -> None:
    """Check a dataset against the data contract and print a summary or the errors."""
    from features.memory_budget import InputTooLarge, check_fits
    from features.validation import run_validate

    if data.is_dir():
        try:  # a dataset too large for memory: one red line, not the out-of-memory killer
            check_fits(sorted(data.glob("*.csv")) + sorted(data.glob("*.parquet")), "validate")
        except InputTooLarge as err:
            fail(f"validate: {err}")
    raise typer.Exit(run_validate(data))


@app.command()
def features(
    data: Path = typer.Option(..., "--data", help="Dataset directory."),
    out: Path = typer.Option(..., "--out", help="Output file: .csv or .parquet."),
    until: str = typer.Option(None, "--until", help="Use only what was known before this date (ISO 8601)."),
    outcome_days: int = typer.Option(14, help="Outcome label horizon in days."),
    output_days: int = typer.Option(7, help="Output and negative label horizon in days."),
    timezone: str = typer.Option("UTC", help="Time zone for hour and weekday features (IANA name)."),
    engine: str = typer.Option("local", "--engine", help="local (one process, the default) or dask (engine/)."),
    scheduler: str = typer.Option(None, "--scheduler", help="With --engine dask: a Dask scheduler address "
                                                            "(default: a local cluster on 127.0.0.1)."),
) -> None:
    """Write the training table: ids, occurred_at, features and labels, one row per activity."""
    import pandas as pd

    from features.build import Horizons
    from features.dataset import DatasetError
    from features.table import export_training_table

    if until is not None:
        try:
            pd.Timestamp(until)
        except ValueError:
            fail(f"--until: cannot parse {until!r} as a date (use ISO 8601, e.g. 2026-03-01)")
    cluster = _engine_settings(engine, scheduler)
    try:
        if cluster is None:
            table = export_training_table(data, out, until, Horizons(outcome_days, output_days), timezone)
        else:
            from engine.command import features_on_dask

            table = features_on_dask(data, out, cluster, _dask_home(), until, Horizons(outcome_days, output_days),
                                     timezone)
    except (DatasetError, FileNotFoundError, ValueError, RuntimeError) as err:
        fail(str(err))
    n = table.stats["activities"] if cluster is not None else len(table.frame)
    labelled = table.stats["outcome_labelled"]
    typer.echo(
        f"wrote {out}: {n:,} activities x {len(table.features)} features; outcome labelled for {labelled:,} "
        f"(censored or without a deal: {n - labelled:,}); data end {table.data_end.isoformat()}"
    )
    if table.stats["logged_after_outcome"]:
        typer.echo(f"{table.stats['logged_after_outcome']:,} activities were logged after the outcome that "
                   f"followed them (column logged_after_outcome); training leaves them out of the outcome model")


# --- training, promotion, batch scoring, demo ------------------------------------------------


def _setup_logging(verbose: bool) -> None:
    """INFO logs with --verbose; otherwise warnings only, so the summary stays on one screen."""
    if verbose:
        configure_logging(True)
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _console(stderr: bool = False):
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output (CI logs, files) gets a wide fixed width so tables are not truncated.
    return Console(stderr=stderr, soft_wrap=True, highlight=False, width=None if stream.isatty() else 160)


def _progress(console, enabled: bool = True):
    """A rich status line for long steps, and the callback that updates it."""
    import contextlib

    if not enabled or not console.is_terminal:
        return contextlib.nullcontext(), lambda msg: logging.getLogger("activity_scorer").info("%s", msg)
    status = console.status("starting")
    return status, lambda msg: status.update(msg)


def _load_train_config(config: Path | None, **overrides):
    from training.config import ConfigError, load_config

    try:
        return load_config(config, **overrides)
    except ConfigError as err:
        fail(f"config: {err}")


def _parse_date_option(value: str | None, option: str):
    from training.data import parse_date

    try:
        return parse_date(value, option)
    except ValueError as err:
        fail(str(err))


def _engine_settings(engine: str, scheduler: str | None):
    """--engine / --scheduler: None for the local engine, else the Dask cluster settings (engine/)."""
    if engine == "local" and not scheduler:
        return None
    from engine.command import check_engine

    try:
        return check_engine(engine, scheduler)
    except (ValueError, RuntimeError) as err:
        fail(str(err))


def _dask_home() -> Path:
    """The data home, where a local Dask cluster spills."""
    from training.env import configure_stores

    return configure_stores()


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Dataset directory (data contract)."),
    until: str = typer.Option(None, "--until", help="Use only what was known before this date (ISO 8601)."),
    config: Path = typer.Option(None, "--config", help="Training YAML (default: training/configs/default.yaml)."),
    model_name: str = typer.Option(None, "--model-name", help="Registered model name (config: registered_model)."),
    experiment: str = typer.Option(None, "--experiment", help="MLflow experiment (config: experiment)."),
    seed: int = typer.Option(None, "--seed", help="LightGBM seed (config: lightgbm.seed)."),
    bundle_out: Path = typer.Option(None, "--bundle-out", help="Also keep the model bundle in this directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
    engine: str = typer.Option("local", "--engine", help="local (one process, the default) or dask (engine/)."),
    scheduler: str = typer.Option(None, "--scheduler", help="With --engine dask: a Dask scheduler address "
                                                            "(default: a local cluster on 127.0.0.1)."),
) -> None:
    """Build features and labels, train, calibrate, evaluate, log to MLflow, register a 'challenger'."""
    from features.dataset import DatasetError
    from training.env import configure_stores
    from training.report import dumps, print_refusal, print_train_summary, train_document
    from training.train import TrainingRefused
    from training.workflow import train_and_register

    _setup_logging(verbose)
    cfg = _load_train_config(config, registered_model=model_name, experiment=experiment, **{"lightgbm.seed": seed})
    until_ts = _parse_date_option(until, "--until")
    if not data.is_dir():
        fail(f"--data {data}: no such dataset directory")
    cluster = _engine_settings(engine, scheduler)
    from features.memory_budget import InputTooLarge, check_train_fits

    try:  # a history too large to train here: one red line, not the out-of-memory killer
        check_train_fits(data, until_ts, engine)
    except InputTooLarge as err:
        fail(f"train: {err}")
    home = configure_stores()
    err_console = _console(stderr=True)
    status, progress = _progress(err_console, enabled=not verbose)
    try:
        with status:
            if cluster is None:
                run = train_and_register(data, cfg, until_ts, progress, bundle_out)
            else:
                from engine.train import train_on_dask

                run = train_on_dask(data, cfg, cluster, home, until_ts, progress, bundle_out)
    except TrainingRefused as err:
        print_refusal(err_console, err.problems)
        raise typer.Exit(1) from None
    except (DatasetError, FileNotFoundError, ValueError, RuntimeError) as err:
        fail(str(err))
    if as_json:
        typer.echo(dumps(train_document(run)))
    else:
        print_train_summary(_console(), run)


@app.command()
def promote(
    version: str = typer.Option(None, "--version", help="Registered version to promote (default: the challenger)."),
    data: Path = typer.Option(None, "--data", help="Dataset for the comparison window (default: the candidate's)."),
    force: bool = typer.Option(False, "--force", help="Promote even if the gate fails (recorded as forced)."),
    reason: str = typer.Option(None, "--reason", help="Why a forced promotion is needed (recorded)."),
    config: Path = typer.Option(None, "--config", help="Training YAML with the promotion settings."),
    model_name: str = typer.Option(None, "--model-name", help="Registered model name (config: registered_model)."),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
) -> None:
    """Make a version the champion if it is at least as good as the current one on the same recent window."""
    import tempfile

    from features.dataset import DatasetError
    from training.env import configure_stores
    from training.promote import PromotionError, run_promotion
    from training.report import dumps, print_promotion

    _setup_logging(verbose)
    cfg = _load_train_config(config, registered_model=model_name)
    configure_stores()
    err_console = _console(stderr=True)
    status, progress = _progress(err_console, enabled=not verbose)
    try:
        with status, tempfile.TemporaryDirectory(prefix="activity-scorer-promote-") as tmp:
            decision = run_promotion(cfg, Path(tmp), version, data, force, reason, progress)
    except (PromotionError, DatasetError, FileNotFoundError, ValueError) as err:
        fail(f"promote: {err}")
    if as_json:
        typer.echo(dumps(decision.to_dict()))
    else:
        print_promotion(_console(), decision)
    if not decision.promoted and not decision.already_champion:
        fail(f"promotion refused for v{decision.candidate_version}: " + "; ".join(decision.reasons))


@app.command()
def score(
    data: Path = typer.Option(..., "--data", help="Dataset directory (data contract)."),
    out: Path = typer.Option(..., "--out", help="Output file, .csv or .parquet."),
    since: str = typer.Option(None, "--since", help="Score activities at or after this date (ISO 8601)."),
    model: str = typer.Option(None, "--model", help="models:/NAME@ALIAS, models:/NAME/V, runs:/RUN_ID or a bundle dir "
                                                     "(default: the champion)."),
    config: Path = typer.Option(None, "--config", help="Training YAML (for the registered model name)."),
    model_name: str = typer.Option(None, "--model-name", help="Registered model name (config: registered_model)."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
    engine: str = typer.Option("local", "--engine", help="local (one process, the default) or dask (engine/)."),
    scheduler: str = typer.Option(None, "--scheduler", help="With --engine dask: a Dask scheduler address "
                                                            "(default: a local cluster on 127.0.0.1)."),
) -> None:
    """Score every activity at or after --since with the champion (or --model): activity_id, p_outcome, p_output, p_negative."""
    import tempfile

    from features.dataset import DatasetError
    from training.env import configure_stores
    from training.report import dumps
    from training.score import ScoringError, output_format, run_scoring

    _setup_logging(verbose)
    cfg = _load_train_config(config, registered_model=model_name)
    since_ts = _parse_date_option(since, "--since")
    try:
        output_format(out)
    except ScoringError as err:
        fail(str(err))
    if not data.is_dir():
        fail(f"--data {data}: no such dataset directory")
    cluster = _engine_settings(engine, scheduler)
    home = configure_stores()
    err_console = _console(stderr=True)
    status, progress = _progress(err_console, enabled=not verbose)
    try:
        with status, tempfile.TemporaryDirectory(prefix="activity-scorer-score-") as tmp:
            if cluster is None:
                result = run_scoring(data, out, cfg, Path(tmp), since_ts, model, progress)
            else:
                from engine.score import score_on_dask

                result = score_on_dask(data, out, cfg, Path(tmp), cluster, home, since_ts, model, progress)
    except (ScoringError, DatasetError, FileNotFoundError, ValueError, RuntimeError) as err:
        fail(f"score: {err}")
    if as_json:
        typer.echo(dumps(result.to_dict()))
        return
    model_txt = f"{result.model_name} v{result.model_version}" if result.model_version else result.model_uri
    typer.echo(f"wrote {result.out}: {result.n_scored:,} of {result.n_activities:,} activities scored with "
               f"{model_txt} in {result.seconds['total']:.1f}s")
    if result.unseen:
        typer.echo("unseen category values (drift): " + ", ".join(f"{k} {v:,}" for k, v in result.unseen.items()))


@app.command()
def demo(
    activities: int = typer.Option(DEFAULT_ACTIVITIES, "--activities", help="Size of the simulated dataset."),
    seed: int = typer.Option(0, "--seed", help="Simulation seed."),
    config: Path = typer.Option(None, "--config", help="Training YAML."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
    serve_it: bool = typer.Option(None, "--serve/--no-serve", show_default=False,
                                  help="Start the service and call /score and /rank (default: serve, except "
                                       "under pytest, where a background service would outlive the test)."),
    port: int = typer.Option(3000, "--port", help="Port of the service (a free one if taken)."),
) -> None:
    """Simulate a dataset into the data home, validate it, train, promote, serve, and say what was done where."""
    from training.demo import DemoError, run_demo
    from training.env import configure_stores

    _setup_logging(verbose)
    cfg = _load_train_config(config)
    home = configure_stores()
    console = _console()
    status, progress = _progress(_console(stderr=True), enabled=not verbose)
    try:
        with status:
            res = run_demo(home, cfg, activities, seed, progress)
    except DemoError as err:
        fail(f"demo: {err}")
    for name, what in res.steps:
        console.print(f"[bold]{name:>9}[/bold]  {what}  [dim]({res.seconds.get(name, 0):.1f}s)[/dim]")
    import os

    console.print(f"data home {home}; MLflow store {os.environ.get('MLFLOW_TRACKING_URI')} "
                  f"(browse: mlflow ui --backend-store-uri {os.environ.get('MLFLOW_TRACKING_URI')})")
    console.print(f"score it: activity-scorer score --data {res.data} --out scores.csv --since 2025-12-01")
    if serve_it is None:
        serve_it = "PYTEST_CURRENT_TEST" not in os.environ
    if serve_it:
        _demo_serve(res, home, console, port)
    if res.extra.get("report"):
        console.print(f"\nmanager report (activity vs accomplishment; open it in a browser): {res.extra['report']}")


# --- the HTTP service (serving/) -------------------------------------------------------------
# training never imports serving: `serve` resolves the model to a bundle directory, then runs
# `bentoml serve serving.service:ActivityScorer` with ACTIVITY_SCORER_BUNDLE pointing at it.

SERVICE_TARGET = "serving.service:ActivityScorer"


def _serving_bundle(model: str | None, home: Path) -> tuple[Path, str]:
    """A local bundle directory for --model (default: the champion) and a label for it."""
    import re
    import shutil

    from models.bundle import MANIFEST_FILE
    from training import tracking
    from training.config import ConfigError, load_config

    if model and (Path(model) / MANIFEST_FILE).is_file():
        return Path(model).resolve(), str(Path(model).resolve())
    if model is None:
        try:
            model = tracking.default_model_uri(load_config().registered_model)
        except ConfigError as err:
            fail(f"serve: config: {err}")
    dst = home / "serving" / re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    try:
        fetched = tracking.fetch_bundle(model, dst)
    except tracking.TrackingError as err:
        fail(f"serve: {err}")
    label = f"{fetched.name} v{fetched.version}" if fetched.version else model
    return fetched.path, label


def service_command(bundle: Path, host: str, port: int, workers: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``bentoml serve`` command line and environment that serve ``bundle`` on ``host:port``."""
    import os
    import sys

    env = dict(os.environ)
    env["ACTIVITY_SCORER_BUNDLE"] = str(bundle)
    env.pop("ACTIVITY_SCORER_MODEL_TAG", None)
    env.setdefault("OMP_NUM_THREADS", "1")  # one LightGBM thread per worker (see serving/service.py)
    from store import STORE_ENV, default_path

    if not env.get(STORE_ENV) and default_path().exists():  # the embedded history store of `load` / `demo`
        env[STORE_ENV] = f"sqlite:///{default_path()}"
    if workers is not None:
        env["ACTIVITY_SCORER_WORKERS"] = str(workers)
    root = Path(__file__).resolve().parents[1]
    cmd = [str(Path(sys.executable).parent / "bentoml"), "serve", SERVICE_TARGET, "--host", host, "--port", str(port),
           "--working-dir", str(root)]
    return cmd, env


def port_free(host: str, port: int) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            s.bind((host, port))
        return True
    except OSError:
        return False


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes the service to the network)."),
    port: int = typer.Option(3000, "--port", help="TCP port."),
    model: str = typer.Option(None, "--model", help="models:/NAME@ALIAS, models:/NAME/V, runs:/RUN_ID or a bundle dir "
                                                     "(default: the champion)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Server processes (default 1; env ACTIVITY_SCORER_WORKERS)."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Serving an alias (the champion by default): swap "
                                "to the version it points at next, without a restart (docs/reliability.md)."),
    follow_interval: float = typer.Option(5.0, "--follow-interval", min=0.5, help="Seconds between two looks at the "
                                                                                  "registry when following."),
    insecure_no_keys: bool = typer.Option(False, "--insecure-no-keys", help="Serve on a non-loopback address without "
                                          "API keys (anyone who can reach it gets scores and can write and erase data)."),
) -> None:
    """Start the HTTP scoring service (POST /score, POST /rank, GET /model) on the champion; Ctrl+C stops it.

    API keys: set ACTIVITY_SCORER_API_KEYS (comma-separated) or ACTIVITY_SCORER_API_KEYS_FILE; every
    call then needs 'Authorization: Bearer <key>'. Without keys the service binds only a loopback
    address unless --insecure-no-keys. Other settings: docs/serving.md.
    """
    import os

    from serving.auth import exposure_problem
    from serving.settings import SettingsError
    from training.env import configure_stores

    if not 0 < port < 65536:
        fail(f"--port {port}: must be between 1 and 65535")
    try:
        problem = exposure_problem(host, insecure_no_keys)
    except SettingsError as err:
        fail(f"serve: {err}")
    if problem:
        fail(f"serve: {problem}")
    if insecure_no_keys:
        typer.secho(f"WARNING: serving on {host} WITHOUT API KEYS (--insecure-no-keys): anyone who can reach it can "
                    "read scores, write events and erase data", fg=typer.colors.RED, err=True, bold=True)
    if not port_free(host, port):
        fail(f"serve: cannot listen on {host}:{port} (in use, or not an address of this machine); try --port")
    home = configure_stores()
    follower = _alias_follower(model, home) if follow else None
    bundle, label = _serving_bundle(model, home) if follower is None else _published_bundle(follower)
    cmd, env = service_command(bundle, host, port, workers)
    from store import STORE_ENV, StoreError, open_store

    if env.get(STORE_ENV):  # a store the service cannot open: one red line here, not a traceback in its log
        try:
            open_store(env[STORE_ENV]).close()
        except StoreError as err:
            fail(f"serve: {STORE_ENV}: {err}")
    from serving.rank_policy import PolicyError, load_policy

    try:  # /rank's ordering settings: a bad value is one red line here, not a traceback in the service's log
        load_policy(env)
    except PolicyError as err:
        fail(f"serve: {err}")
    typer.echo(f"serving {label} on http://{host}:{port} (API docs at /, model at /model; Ctrl+C stops it)")
    if follower is None:
        os.execve(cmd[0], cmd, env)
    from serving.reload import FOLLOW_ENV
    from training.follow import run_following

    configure_logging()
    env[FOLLOW_ENV] = str(follower.pointer)
    raise typer.Exit(run_following(cmd, env, follower, follow_interval))


def _alias_follower(model: str | None, home: Path):  # noqa: ANN202
    """A follower of ``--model`` when it is an alias (default: the champion), else None (serve it as it is)."""
    from training import tracking
    from training.config import ConfigError, load_config
    from training.follow import AliasFollower, alias_of

    if model is None:
        try:
            model = tracking.default_model_uri(load_config().registered_model)
        except ConfigError as err:
            fail(f"serve: config: {err}")
    return AliasFollower(model, home) if alias_of(model) else None


def _published_bundle(follower) -> tuple[Path, str]:  # noqa: ANN001
    from training import tracking

    try:
        published = follower.publish()
    except tracking.TrackingError as err:
        fail(f"serve: {err}")
    return published.bundle, f"{follower.name} v{published.version} (following {follower.uri})"


def _demo_model_uri(res) -> str:  # noqa: ANN001
    """The model the demo serves: the champion of the model it registered (the config's name)."""
    from training import tracking

    reg = res.train_run.registered
    if res.promotion is not None and not res.promotion.promoted and not getattr(res.promotion, "champion_version", None):
        return f"models:/{reg.name}/{reg.version}"  # nothing promoted yet: show the challenger
    return tracking.default_model_uri(reg.name)


def _demo_serve(res, home: Path, console, port: int) -> None:
    """The demo's last step: serve the champion in the background and show a real /score and /rank."""
    import json
    import subprocess
    import time
    import urllib.error
    import urllib.request

    from features import contract as c
    from features.build import request_items

    pid_file, log_file = home / "serve.pid", home / "serve.log"
    _stop_previous_service(pid_file)
    bundle, label = _serving_bundle(_demo_model_uri(res), home)
    if not port_free("127.0.0.1", port):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            console.print(f"port {port} is in use; the service takes port {s.getsockname()[1]}")
            port = s.getsockname()[1]
    cmd, env = service_command(bundle, "127.0.0.1", port)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(proc.pid), encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            fail(f"demo: the service exited (code {proc.returncode}); see {log_file}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                fail(f"demo: the service did not start within 120 s; see {log_file}")
            time.sleep(0.5)

    import pandas as pd

    acts = res.dataset[c.ACTIVITIES]
    recent = acts[acts[c.OCCURRED_AT] >= acts[c.OCCURRED_AT].max() - pd.Timedelta(days=30)]
    deal = recent[c.DEAL_ID].value_counts().index[0]  # the most active deal of the last month
    last = recent[recent[c.DEAL_ID] == deal].sort_values(c.OCCURRED_AT).iloc[-1]
    item = request_items(res.dataset, [str(last[c.ACTIVITY_ID])])[0]
    at = item["activity"][c.OCCURRED_AT]
    hist = item["history"]
    hist[c.ACTIVITIES] = sorted((r for r in hist[c.ACTIVITIES] if r[c.OCCURRED_AT] < at),
                                key=lambda r: r[c.OCCURRED_AT])[-30:]
    kept = {r[c.ACTIVITY_ID] for r in hist[c.ACTIVITIES]}
    hist[c.RESPONSES] = [r for r in hist.get(c.RESPONSES, []) if r[c.ACTIVITY_ID] in kept]
    score_file, rank_file = home / "demo-score.json", home / "demo-rank.json"
    score_file.write_text(json.dumps({"items": [item], "explain": True}, indent=1), encoding="utf-8")
    rank_body = {k: item[k] for k in ("deal", "contact", "account", "history") if k in item} | {"at": at, "top_k": 5}
    rank_file.write_text(json.dumps(rank_body, indent=1), encoding="utf-8")

    def call(path: str, body_file: Path) -> dict:
        req = urllib.request.Request(f"{url}{path}", data=body_file.read_bytes(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    console.print(f"[bold]{'serve':>9}[/bold]  {label} on {url} (pid {proc.pid}, log {log_file})")
    console.print(f"\n$ curl -s {url}/score -H 'Content-Type: application/json' -d @{score_file}")
    result = call("/score", score_file)["results"][0]
    console.print(f"  {result['activity_id']} ({item['activity'][c.TYPE]}): p_outcome {result['p_outcome']:.3f}, "
                  f"p_output {result['p_output']:.3f}, p_negative {result['p_negative']:.3f}")
    for f in result.get("factors", [])[:3]:
        console.print(f"    {f['text']}")
    console.print(f"\n$ curl -s {url}/rank -H 'Content-Type: application/json' -d @{rank_file}")
    ranking = call("/rank", rank_file)
    console.print(f"  (best first, ordered by {ranking.get('ranked_by', 'p_outcome')})")
    for k, r in enumerate(ranking["ranked"], start=1):
        a = r["activity"]
        how = "automated" if a.get(c.IS_AUTOMATED) else "tailored" if c.IS_AUTOMATED in a else ""
        effect = (f"effect {r['effect']:+.3f} [{r['effect_low']:+.3f}, {r['effect_high']:+.3f}], "
                  if r.get("effect") is not None else "")
        console.print(f"  {k}. {a[c.TYPE]} {how} to {a.get(c.CONTACT_ID, 'the account')}: "
                      f"{effect}p_outcome {r['p_outcome']:.3f}")
    from store import STORE_FILE

    if (home / STORE_FILE).exists():  # the demo loaded the history store: the same score by ids, and the deal page
        by_id_file = home / "demo-score-by-id.json"
        by_id = {"items": [{"activity": {c.ACTIVITY_ID: result["activity_id"], c.TYPE: item["activity"][c.TYPE]}}],
                 "explain": True}
        by_id_file.write_text(json.dumps(by_id, indent=1), encoding="utf-8")
        console.print(f"\n$ curl -s {url}/score -H 'Content-Type: application/json' -d @{by_id_file}"
                      f"   # ids only: the rest comes from the history store")
        stored = call("/score", by_id_file)["results"][0]
        console.print(f"  {stored['activity_id']}: p_outcome {stored['p_outcome']:.3f}, p_output {stored['p_output']:.3f}"
                      f" (its whole stored history; the request above carried its last 30 activities)")
        when = pd.Timestamp(at).strftime("%Y-%m-%dT%H:%M:%SZ")
        console.print(f"\nA rep's page for this deal: {url}/ui/deals/{deal}?at={when}  (JSON: {url}/deals/{deal}/next;"
                      f" without ?at= it ranks at now)")
    console.print(f"\nThe service keeps running: API docs at {url}/ ; stop it with: kill {proc.pid}")


def _stop_previous_service(pid_file: Path) -> None:
    """Stop the service an earlier demo started (its pid is in the data home), if it still runs."""
    import psutil

    try:
        proc = psutil.Process(int(pid_file.read_text(encoding="utf-8").strip()))
        if SERVICE_TARGET not in " ".join(proc.cmdline()):
            return
        proc.terminate()
        proc.wait(timeout=15)
    except (OSError, ValueError, psutil.Error):
        return


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
