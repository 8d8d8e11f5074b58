"""The BentoML service: ``bentoml serve serving.service:ActivityScorer`` (or ``activity-scorer serve``).

Wiring only: settings, the loaded bundle, the :class:`serving.scorer.Scorer`, the request
guard (API keys, limits, error bodies, request log) and the routes of shared/API.md:
``POST /score``, ``POST /rank``, ``GET /model``; BentoML adds ``/livez``, ``/readyz``,
``/metrics`` and the OpenAPI docs at ``/``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

# One OpenMP thread per worker: LightGBM otherwise predicts a one-row request on every core and
# the idle OpenMP threads spin, which multiplies per-request latency on a shared machine. Set
# before LightGBM (and its OpenMP runtime) is loaded; parallelism comes from workers instead.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import anyio  # noqa: E402
import bentoml  # noqa: E402
from bentoml.exceptions import BentoMLException  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from serving import runtime  # noqa: E402
from serving.auth import load_api_keys  # noqa: E402
from serving.batching import ScoreBatcher  # noqa: E402
from serving.errors import InvalidRequest, error_body  # noqa: E402
from serving.metrics import ServiceMetrics  # noqa: E402
from serving.middleware import REQUEST_STATS, GuardConfig, RequestGuard  # noqa: E402
from serving.model_store import LoadedModel, load_model  # noqa: E402
from serving.prediction_log import open_prediction_log, rank_record, score_record  # noqa: E402
from serving.rank_policy import load_policy  # noqa: E402
from serving.schemas import Limits, RankRequest, RankResponse, ScoreRequest, ScoreResponse, set_limits  # noqa: E402
from serving.scorer import RequestStats, Scorer  # noqa: E402
from serving.reload import ModelFollower  # noqa: E402
from serving.settings import load_settings  # noqa: E402
from serving.store_access import HistoryAccess, open_history_store, store_routes  # noqa: E402

logger = logging.getLogger(__name__)

# Read at import only for what BentoML needs when the class is declared (timeout, workers) and to
# fail fast on a bad key file; the app and the instance read the environment again when built.
SETTINGS = load_settings()
load_api_keys(SETTINGS)
logging.getLogger("serving").setLevel(SETTINGS.log_level.upper())
if SETTINGS.runtime_fixes:
    runtime.install()


def _invalid(err: InvalidRequest) -> Response:
    return Response(error_body(err.errors), status_code=err.status, media_type="application/json")


@bentoml.service(
    name="activity-scorer",
    traffic={"timeout": SETTINGS.timeout_s},
    workers=SETTINGS.workers,
    logging={"access": {"enabled": False}},
)
class ActivityScorer:
    """Scores CRM activities and ranks next-best activities with one model bundle."""

    def __init__(self) -> None:
        settings = load_settings()
        set_limits(Limits(settings.max_items, settings.max_history_rows, settings.max_candidates))
        self.model = load_model(settings)
        self.scorer = Scorer(self.model, settings.max_factors, settings.max_rank_contacts, settings.max_candidates,
                             policy=load_policy())  # ACTIVITY_SCORER_RANK_*: cost, exploration (serving.rank_policy)
        self.runtime_fixes = settings.runtime_fixes
        self.history = HistoryAccess(open_history_store(settings))  # scoring by id, /events (None: no store)
        self.max_body_bytes, self.max_event_rows = settings.max_body_bytes, settings.max_event_rows
        self.inline_rows = settings.inline_rows
        self.prediction_log = open_prediction_log(settings)  # every /score and /rank answer; None: off
        if self.prediction_log is not None:
            log = self.prediction_log
            self.scorer.rank_log = lambda *args: log.defer(lambda: rank_record(*args))
        self._limiter = anyio.CapacityLimiter(1)
        # the batcher asks for the current scorer at each batch: a hot swap (serving.reload) replaces it
        self.batcher = ScoreBatcher(lambda reqs, st: self.scorer.score_batch(reqs, st), settings.batch_max_items,
                                    lambda r: len(r.items), ServiceMetrics.get().batch_size.observe
                                    ) if settings.batch_max_items > 1 else None
        self.follower: ModelFollower | None = None
        self._follow = (settings.follow, settings.follow_interval_s)
        m = self.model.bundle.manifest
        logger.info("serving %s version %s (trained %s) from %s", m.model_name, m.model_version, m.trained_at,
                    self.model.source)

    @bentoml.on_startup
    def warm_up(self) -> None:
        self.scorer.warm_up()
        if self.runtime_fixes:
            frozen = runtime.freeze_startup_heap()
            logger.info("start-up heap frozen: %d objects", frozen)

    @bentoml.on_startup
    async def follow_model(self) -> None:
        """With ACTIVITY_SCORER_FOLLOW, watch the deployment pointer and swap bundles (serving.reload)."""
        pointer, interval = self._follow
        if pointer:
            self.follower = ModelFollower(Path(pointer), self.scorer.model.path, self._fresh_scorer,
                                          self._install_scorer, interval)
            self.follower.start()
            logger.info("following the deployment pointer %s every %.1f s", pointer, interval)

    def _fresh_scorer(self, model: LoadedModel) -> Scorer:
        """A warmed-up scorer on ``model`` with the current one's settings (runs in a worker thread)."""
        old = self.scorer
        new = Scorer(model, old.explainer.max_factors, old.max_rank_contacts, old.max_candidates, policy=old.policy)
        new.rank_log = old.rank_log
        new.warm_up()
        return new

    def _install_scorer(self, scorer: Scorer) -> None:
        self.scorer, self.model = scorer, scorer.model  # one assignment: a request keeps the scorer it started with
        if self.runtime_fixes:  # let the old bundle's frozen objects go, freeze the new heap
            runtime.refreeze_heap()

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /) -> ScoreResponse:
        """Score activities (done or planned): calibrated p_outcome, p_output, p_negative per item.

        Factors (with explain=true) are the largest contributions to p_outcome; effect is in
        log-odds of the outcome model's raw score, positive raises p_outcome.
        With a history store, an item may carry only ids (docs/store.md).
        """
        try:
            request, unknown = await self.history.enrich_score(request)
        except InvalidRequest as err:
            return _invalid(err)
        answer = self.history.mark_score(await self._score(request), unknown)
        if self.prediction_log is not None and not isinstance(answer, Response):
            self.prediction_log.defer(lambda: score_record(request, answer))
        return answer

    async def _score(self, request: ScoreRequest) -> ScoreResponse:
        size = sum(1 + (i.history.n_rows() if i.history is not None else 0) for i in request.items)
        if self.batcher is not None and size <= self.inline_rows:
            answer = await self.batcher.submit(request, REQUEST_STATS.get() or RequestStats())
            return _invalid(answer) if isinstance(answer, InvalidRequest) else answer
        return await self._run(self.scorer.score, request, size)

    @bentoml.api(route="/rank")
    async def rank(self, request: RankRequest, /) -> RankResponse:
        """Rank next-best activities for a deal at `at` (plan-time model), best p_outcome first."""
        try:
            request, unknown = await self.history.enrich_rank(request)
        except InvalidRequest as err:
            return _invalid(err)
        return self.history.mark_rank(await self._rank(request), unknown)

    async def _rank(self, request: RankRequest) -> RankResponse:
        n = len(request.candidates) if request.candidates is not None else self.scorer.max_candidates
        size = n * (1 + (request.history.n_rows() if request.history is not None else 0))
        return await self._run(self.scorer.rank, request, size)

    async def _run(self, method, request, size: int):  # noqa: ANN001, ANN202
        """Small requests run on the event loop (no thread hand-off); large ones in a worker thread."""
        stats = REQUEST_STATS.get() or RequestStats()
        try:
            if size <= self.inline_rows:
                return method(request, stats)
            return await anyio.to_thread.run_sync(method, request, stats, limiter=self._limiter)
        except InvalidRequest as err:
            return _invalid(err)

    def describe(self) -> dict:
        info = self.scorer.model.describe()
        if self.follower is not None:
            info["follow"] = self.follower.status.as_dict()
        return info


async def _model_info(_: Request) -> Response:
    """The served model: name, version, when and on what window it was trained, test metrics, features."""
    return JSONResponse(bentoml.get_current_service().describe())


def _model_version() -> str:
    try:
        return bentoml.get_current_service().scorer.model_ref.version or ""
    except BentoMLException:  # not started yet
        return ""


def _guard_config() -> GuardConfig:
    settings = load_settings()
    keepalive = settings.keepalive_requests if settings.workers > 1 else 0
    return GuardConfig(load_api_keys(settings), settings.max_body_bytes, keepalive, settings.rate_limit_per_s,
                       settings.rate_limit_burst)


def _guard(app):  # noqa: ANN001, ANN202  (ASGI middleware factory: runs when the app is built)
    return RequestGuard(app, _guard_config(), _model_version, ServiceMetrics.get(), reload=_guard_config)


ActivityScorer.add_asgi_middleware(_guard)
# /docs.json declares every answer a route can give (401, 413, 422, 504, mounted routes): serving/openapi.py.
from serving.openapi import OpenAPIMiddleware  # noqa: E402

ActivityScorer.add_asgi_middleware(OpenAPIMiddleware, service=ActivityScorer)
ActivityScorer.mount_asgi_app(Starlette(routes=[Route("/model", _model_info, methods=["GET"]), *store_routes()]),
                              path="/")
