"""Scoring and ranking: validated requests in, responses out; no BentoML here.

Requests go through the feature code training uses (``features.build.build_serving_columns``),
the bundle's encoding (``FeatureSpec.encode_columns``) and ``ModelBundle.predict_proba``:
the ``full`` variant for ``/score`` (activities as they happened), the ``plan`` variant for
``/rank`` (planned activities, plan-time features only). Explanations are the bundle's
``pred_contrib`` rows for the outcome label.

``/rank`` orders candidates by the bundle's ranking model (``models.ranking``: the
activity's own effect, ``rank_score``) when the bundle has one, else by the plan model's
``p_outcome``; ``p_outcome`` is reported either way.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from collections.abc import Callable
from typing import Any

import numpy as np

from features import contract as c
from features import schema as s
from features.build import build_serving_columns
from models.bundle import LABEL_NAMES, SCORE_COLUMNS, VARIANT_FULL, VARIANT_PLAN
from serving import candidates as cand
from serving import rank_policy
from serving.errors import InvalidRequest
from serving.explain import Explainer
from serving.model_store import LoadedModel
from serving.schemas import (
    Factor,
    ModelRef,
    RANKED_BY_EFFECT,
    RANKED_BY_P_OUTCOME,
    RANKED_BY_RANKING,
    RankedActivity,
    RankRequest,
    RankResponse,
    ScoreRequest,
    ScoreResponse,
    ScoreResult,
)

logger = logging.getLogger(__name__)

OUTCOME = "outcome"  # the label explanations and ranking are about (a key of features.schema.LABELS)
CANDIDATE_ID_PREFIX = "candidate-"


@dataclass
class RequestStats:
    """Counts of one request, for the request log line and metrics (no payload)."""

    items: int = 0
    history_rows: int = 0
    unseen: dict[str, int] = field(default_factory=dict)
    proposed: bool = False


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Scorer:
    """Scores and ranks with one loaded bundle.

    Args:
        model: the bundle and its serving context.
        max_factors: factors per result when explanations are asked for.
        max_rank_contacts: contacts ``/rank`` proposes candidates for.
        max_candidates: most candidates ``/rank`` proposes.
    """

    def __init__(self, model: LoadedModel, max_factors: int = 5, max_rank_contacts: int = 5,
                 max_candidates: int = 60, policy: rank_policy.RankPolicy | None = None):
        self.model = model
        self.effects = model.effects
        self.policy = policy or rank_policy.RankPolicy()
        # set by the service: called with what prediction_log.rank_record takes, for every /rank answer
        self.rank_log: Callable[..., None] | None = None
        self.bundle = model.bundle
        self.spec = model.bundle.spec
        self.context = model.context
        self.ranking = model.ranking
        prior = self.context.prior_sum / self.context.prior_n if self.context.prior_n > 0 else None
        self.explainer = Explainer(self.spec, max_factors, usual_rep_rate=prior)
        self.max_rank_contacts = max_rank_contacts
        self.max_candidates = max_candidates
        m = self.bundle.manifest
        self.model_ref = ModelRef(name=m.model_name, version=None if m.model_version is None else str(m.model_version),
                                  trained_at=m.trained_at)
        self._categorical = [(j, f.name) for j, f in enumerate(self.spec.features) if f.kind == s.CATEGORICAL]
        self._numeric_custom = [cf for cf in self.context.custom_fields if cf.kind == s.NUMERIC]

    # -- shared steps ------------------------------------------------------------------------

    def _predict(self, items: list[dict[str, Any]], variant: str
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], list[list[str]]]:
        """Features, encoding and calibrated probabilities; returns (proba, matrix, raw columns, unseen per row)."""
        columns = build_serving_columns(items, self.context)
        matrix, unseen = self.spec.encode_columns(columns)
        if variant == VARIANT_PLAN and self.spec.execution_indices:
            matrix[:, self.spec.execution_indices] = np.nan  # as the plan model was trained
        proba = self.bundle.predict_proba(matrix, variant)
        unseen_rows: list[list[str]] = [[] for _ in items]
        if unseen:
            for j, name in self._categorical:
                if name not in unseen:
                    continue
                raw = columns[name]
                for i in np.flatnonzero(np.isnan(matrix[:, j])):
                    if raw[i] is not None:
                        unseen_rows[i].append(name)
        return proba, matrix, columns, unseen_rows

    @staticmethod
    def _count_unseen(stats: RequestStats, unseen_rows: list[list[str]]) -> None:
        for names in unseen_rows:
            for name in names:
                stats.unseen[name] = stats.unseen.get(name, 0) + 1

    def _contributions(self, matrix: np.ndarray, variant: str, rows: list[int] | None = None) -> np.ndarray:
        """Outcome-model contributions of the given rows (all rows by default), in that order."""
        return self.bundle.contributions(matrix if rows is None else matrix[rows], variant, OUTCOME)

    @staticmethod
    def _scores(proba: dict[str, np.ndarray], i: int) -> dict[str, float | None]:
        """``{"p_outcome": ..., "p_output": ..., "p_negative": ...}`` of row ``i`` (None: label not trained)."""
        out: dict[str, float | None] = {}
        for label in LABEL_NAMES:
            values = proba.get(label)
            v = None if values is None else float(values[i])
            out[SCORE_COLUMNS[label]] = v if v is not None and math.isfinite(v) else None
        return out

    def _check_custom_fields(self, rows: list[tuple[int | None, str, dict[str, Any] | None, str]]) -> None:
        """Numeric custom fields must hold numbers (text that is not one would be silently lost)."""
        if not self._numeric_custom:
            return
        errors = []
        for item, path, row, table in rows:
            if not row:
                continue
            for cf in self._numeric_custom:
                if cf.table != table or cf.column not in row:
                    continue
                value = row[cf.column]
                if isinstance(value, str):
                    try:
                        float(value)
                        continue
                    except ValueError:
                        errors.append({"item": item, "field": f"{path}.{cf.column}",
                                       "message": "expected a number: this custom field is numeric in the model"})
        if errors:
            raise InvalidRequest(errors)

    @staticmethod
    def _rows_of(item_index: int | None, prefix: str, item: dict[str, Any]
                 ) -> list[tuple[int | None, str, dict[str, Any] | None, str]]:
        rows = [(item_index, f"{prefix}activity", item.get("activity"), c.ACTIVITIES),
                (item_index, f"{prefix}deal", item.get("deal"), c.DEALS),
                (item_index, f"{prefix}contact", item.get("contact"), c.CONTACTS),
                (item_index, f"{prefix}account", item.get("account"), c.ACCOUNTS)]
        history = item.get("history") or {}
        for table in (c.ACTIVITIES, c.CONTACTS):
            for k, row in enumerate(history.get(table) or []):
                rows.append((item_index, f"{prefix}history.{table}[{k}]", row, table))
        return rows

    def _factors(self, contrib: np.ndarray | None, columns: dict[str, np.ndarray], row: int, column_row: int
                 ) -> list[Factor] | None:
        if contrib is None:
            return None
        return [Factor.model_construct(**f) for f in self.explainer.factors(contrib, columns, row, column_row)]

    # -- /score ----------------------------------------------------------------------------

    def score(self, request: ScoreRequest, stats: RequestStats | None = None) -> ScoreResponse:
        """Score every item with the ``full`` model (one result per item, same order).

        Raises:
            InvalidRequest: a numeric custom field holds text.
        """
        (answer,) = self.score_batch([request], [stats if stats is not None else RequestStats()])
        if isinstance(answer, InvalidRequest):
            raise answer
        return answer

    def _score_items(self, request: ScoreRequest, stats: RequestStats) -> list[dict[str, Any]]:
        """A request's items as plain data for the feature code (raises InvalidRequest)."""
        now = None
        items = []
        rows = []
        for i, item in enumerate(request.items):
            d = item.model_dump(exclude_none=True)
            activity = d["activity"]
            if c.OCCURRED_AT not in activity:
                now = now or _now()
                activity[c.OCCURRED_AT] = now
            if item.history is not None:
                stats.history_rows += item.history.n_rows()
            items.append(d)
            if self._numeric_custom:
                rows += self._rows_of(i, "", d)
        stats.items = len(items)
        self._check_custom_fields(rows)
        return items

    def score_batch(self, requests: list[ScoreRequest], stats: list[RequestStats]
                    ) -> list[ScoreResponse | InvalidRequest]:
        """Score several ``/score`` requests with one feature and one model call (one answer each).

        Items never see each other (the feature code keeps each item's history apart), so the
        answers are those of scoring each request alone; a request that cannot be scored gets
        its :class:`InvalidRequest` as its answer and does not affect the others.
        """
        answers: list[ScoreResponse | InvalidRequest | None] = [None] * len(requests)
        items: list[dict[str, Any]] = []
        spans: list[tuple[int, int, int]] = []  # (request, first row, end row)
        for k, (request, st) in enumerate(zip(requests, stats, strict=True)):
            try:
                own = self._score_items(request, st)
            except InvalidRequest as err:
                answers[k] = err
                continue
            spans.append((k, len(items), len(items) + len(own)))
            items += own
        if items:
            proba, matrix, columns, unseen_rows = self._predict(items, VARIANT_FULL)
            explain_rows = [i for k, a, b in spans if requests[k].explain for i in range(a, b)]
            contrib = self._contributions(matrix, VARIANT_FULL, explain_rows) if explain_rows else None
            contrib_row = {i: n for n, i in enumerate(explain_rows)}
            for k, a, b in spans:
                self._count_unseen(stats[k], unseen_rows[a:b])
                explain = requests[k].explain
                results = [
                    ScoreResult.model_construct(
                        activity_id=items[i]["activity"].get(c.ACTIVITY_ID),
                        **self._scores(proba, i),
                        factors=self._factors(contrib, columns, contrib_row[i], i) if explain else None,
                        unseen=unseen_rows[i],
                    )
                    for i in range(a, b)
                ]
                answers[k] = ScoreResponse.model_construct(model=self.model_ref, results=results,
                                                           effect_unit="log-odds")
        return answers  # type: ignore[return-value]

    # -- /rank -----------------------------------------------------------------------------

    def rank(self, request: RankRequest, stats: RequestStats | None = None) -> RankResponse:
        """Score candidate activities at ``at`` with the ``plan`` model; best first.

        Best first by the ranking model's ``rank_score`` when the bundle has one, else by
        ``p_outcome``.

        Raises:
            InvalidRequest: a numeric custom field holds text.
        """
        stats = stats if stats is not None else RequestStats()
        at = request.at or _now()
        base = request.model_dump(exclude_none=True, include={"deal", "contact", "account", "history"})
        if request.history is not None:
            stats.history_rows = request.history.n_rows()
        deal = base.get("deal") or {}
        contact = base.get("contact") or {}
        rep_default = request.rep_id or deal.get(c.OWNER_REP_ID)
        if request.candidates is not None:
            given = [cd.model_dump(exclude_none=True) for cd in request.candidates]
            proposed = False
        else:
            given = cand.propose(self.spec, base, at, self.max_rank_contacts, self.max_candidates)
            proposed = True
        stats.proposed = proposed
        contacts_by_id = {r[c.CONTACT_ID]: r for r in (base.get("history") or {}).get(c.CONTACTS) or []}
        if contact.get(c.CONTACT_ID):
            contacts_by_id[contact[c.CONTACT_ID]] = contact
        items, shown = [], []
        for k, candidate in enumerate(given):
            # a deliberate wait has no direction (as in training data); a touch is outbound unless stated
            activity = dict(candidate) if candidate.get(c.TYPE) == cand.NONE_TYPE else {c.DIRECTION: "outbound",
                                                                                         **candidate}
            activity[c.ACTIVITY_ID] = f"{CANDIDATE_ID_PREFIX}{k}"
            activity[c.OCCURRED_AT] = at
            activity.setdefault(c.CONTACT_ID, contact.get(c.CONTACT_ID))
            activity.setdefault(c.REP_ID, rep_default)
            if deal.get(c.DEAL_ID) is not None:
                activity[c.DEAL_ID] = deal[c.DEAL_ID]
            activity = {key: v for key, v in activity.items() if v is not None}
            contact_id = activity.get(c.CONTACT_ID)
            who = contacts_by_id.get(contact_id) if contact_id else contact or None
            if who is None and contact_id:
                who = {c.CONTACT_ID: contact_id}
            item = {"activity": activity, "history": base.get("history") or {}}
            for key, value in (("deal", deal or None), ("contact", who), ("account", base.get("account"))):
                if value:
                    item[key] = value
            items.append(item)
            shown.append({key: v for key, v in activity.items() if key != c.ACTIVITY_ID})
        if self._numeric_custom:
            rows = self._rows_of(None, "", base | {"activity": None})
            rows += [(None, f"candidates[{k}]", cd, c.ACTIVITIES) for k, cd in enumerate(given)]
            self._check_custom_fields(rows)
        stats.items = len(items)
        n = len(items)
        extra = self._effect_rows(items, shown) if self.effects is not None else {}
        all_items = items + [row for row, _ in extra.values()] if extra else items
        proba, matrix, columns, unseen_rows = self._predict(all_items, VARIANT_PLAN)
        self._count_unseen(stats, unseen_rows[:n])
        effect = ordering = None
        if self.effects is not None:
            effect, ordering = self._order_by_effect(shown, matrix, proba, extra, n)
            order = ordering.order
            ranked_by = RANKED_BY_EFFECT
            rank_p = self.ranking.probability(matrix[:n]) if self.ranking is not None else None
        else:
            if self.ranking is not None:
                rank_p = self.ranking.probability(matrix[:n])  # matrix: plan rows (execution columns blanked)
                ranked_by = RANKED_BY_RANKING
            else:
                rank_p = proba[OUTCOME][:n]
                ranked_by = RANKED_BY_P_OUTCOME
            order = sorted(range(n), key=lambda i: (-rank_p[i], i))
        full_order = order
        order = order[: request.top_k]
        contrib = self._contributions(matrix, VARIANT_PLAN, order) if request.explain else None
        at_text = at.isoformat()
        ranked = []
        for k, i in enumerate(order):
            activity = shown[i]
            activity[c.OCCURRED_AT] = at_text
            extra_fields = {}
            if effect is not None:
                extra_fields = dict(effect=float(effect.effect[i]), effect_low=float(effect.low[i]),
                                    effect_high=float(effect.high[i]), overlap=bool(effect.overlap[i]),
                                    cost=float(ordering.cost[i]), net_effect=float(ordering.net[i]),
                                    guardrail=ordering.guardrail[i], propensity=float(ordering.propensity[i]))
            ranked.append(RankedActivity.model_construct(
                activity=activity,
                rank_score=float(rank_p[i]) if self.ranking is not None and rank_p is not None else None,
                **self._scores(proba, i),
                **extra_fields,
                factors=self._factors(contrib, columns, k, i),
                unseen=unseen_rows[i],
            ))
        response = RankResponse.model_construct(model=self.model_ref, effect_unit="log-odds", at=at_text,
                                                n_candidates=n, proposed=proposed, ranked_by=ranked_by,
                                                ranked=ranked, explored=bool(ordering.explored) if ordering else False)
        if self.rank_log is not None:
            scores = {SCORE_COLUMNS[name]: values[:n] for name, values in proba.items() if name in SCORE_COLUMNS}
            if self.ranking is not None and rank_p is not None:
                scores["rank_score"] = rank_p
            if effect is not None:
                scores |= {"effect": effect.effect, "effect_low": effect.low, "effect_high": effect.high,
                           "overlap": effect.overlap, "cost": ordering.cost, "net_effect": ordering.net,
                           "guardrail": ordering.guardrail, "propensity": ordering.propensity}
            else:
                scores["propensity"] = np.eye(1, n, full_order[0]).ravel() if n else np.zeros(0)
            self.rank_log(request, shown, scores, full_order, request.top_k, ranked_by, self.model_ref, at_text,
                          bool(ordering.explored) if ordering else False, self.policy.exploration if ordering else 0.0)
        return response

    # -- effects -------------------------------------------------------------------------------

    def _effect_rows(self, items: list[dict[str, Any]], shown: list[dict[str, Any]]
                     ) -> dict[Any, tuple[dict[str, Any], Any]]:
        """Hidden rows the effects need: ``none`` in this state, and hand-made versions of automated candidates."""
        extra: dict[Any, tuple[dict[str, Any], Any]] = {}
        base = items[0]
        wait = {key: v for key, v in base["activity"].items()
                if key in (c.ACTIVITY_ID, c.OCCURRED_AT, c.REP_ID, c.DEAL_ID, c.CONTACT_ID, c.ACCOUNT_ID)}
        wait[c.TYPE] = cand.NONE_TYPE
        wait[c.ACTIVITY_ID] = f"{CANDIDATE_ID_PREFIX}none"
        if c.IS_AUTOMATED in self.spec.names:
            wait[c.IS_AUTOMATED] = False
        extra["none"] = ({**base, "activity": wait}, None)
        hand_of = {(a.get(c.TYPE), a.get(c.CONTACT_ID)) for a in shown if not a.get(c.IS_AUTOMATED)}
        for i, a in enumerate(shown):
            if a.get(c.IS_AUTOMATED) and a.get(c.TYPE) != cand.NONE_TYPE \
                    and (a.get(c.TYPE), a.get(c.CONTACT_ID)) not in hand_of:
                act = {key: v for key, v in items[i]["activity"].items() if key != c.SEQUENCE_STEP}
                act.update({c.IS_AUTOMATED: False, c.PERSONALIZATION: cand.TAILORED[c.PERSONALIZATION],
                            c.ACTIVITY_ID: f"{CANDIDATE_ID_PREFIX}hand-{i}"})
                extra[("hand", i)] = ({**items[i], "activity": act}, i)
        return extra

    def _order_by_effect(self, shown: list[dict[str, Any]], matrix: np.ndarray, proba: dict[str, np.ndarray],
                         extra: dict[Any, tuple[dict[str, Any], Any]], n: int):  # noqa: ANN202
        keys = list(extra)
        none_row = matrix[n + keys.index("none")][None, :] if cand.NONE_TYPE in cand.learned_types(self.spec) \
            else None
        est = self.effects.predict(matrix[:n], none_row)
        hand: dict[int, tuple[float, float, float]] = {}
        hand_keys = [k for k in keys if k != "none"]
        types = [str(a.get(c.TYPE)) for a in shown]
        automated = [bool(a.get(c.IS_AUTOMATED)) for a in shown]
        contacts = [a.get(c.CONTACT_ID) for a in shown]
        p_neg = proba["negative"][:n] if "negative" in proba else np.zeros(n)
        if hand_keys:
            rows = np.array([n + keys.index(k) for k in hand_keys])
            h = self.effects.predict(matrix[rows], none_row)
            neg = proba["negative"][rows] if "negative" in proba else np.zeros(len(rows))
            h_cost = self.policy.cost([types[k[1]] for k in hand_keys], [False] * len(rows), neg)
            for j, k in enumerate(hand_keys):
                hand[k[1]] = (float(h.effect[j] - h_cost[j]), float(h.effect[j]), float(h.high[j]))
        ordering = rank_policy.order_by_effect(self.policy, types, automated, contacts, est.effect, est.low,
                                               est.high, est.overlap, p_neg, hand)
        return est, ordering

    # -- start-up ------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """One score and one rank on a made-up item, so first requests pay no lazy set-up."""
        from serving.schemas import Activity, RankRequest, ScoreItem

        at = _now()
        self.score(ScoreRequest(items=[ScoreItem(activity=Activity(type="call", occurred_at=at))], explain=True))
        rank_log, self.rank_log = self.rank_log, None  # a made-up state is not a prediction to keep
        try:
            self.rank(RankRequest(at=at, top_k=1))
        finally:
            self.rank_log = rank_log
