"""The simulator's ground truth: the one function that gives an activity's true probabilities.

:func:`true_probabilities` is vectorized over numpy arrays and is the code the simulator
calls to draw every activity's outcome, output and negative output, so a next-best-activity
ranking scored with :func:`true_outcome_probability` is scored against exactly the process
that generated the data.

Every input except ``quality`` (the deal's latent quality) and ``rep_skill`` is observable
from contract columns at or before the activity time:

- the activity: type, personalization, is_automated, direction, hour and weekday of
  ``occurred_at`` (UTC: the simulated team works on UTC);
- the deal at ``t``: stage_order of the latest stage entered strictly before ``t`` and
  days since it was entered;
- the contact: seniority, department, touches to the contact in ``[t - 7 days, t)``
  (activities of any deal, type ``none`` excluded), meaningful and negative responses from the
  contact with ``occurred_at`` in ``[t - 30 days, t)``.

``rep_skill`` shows in a rep's track record; ``quality`` drives mostly how much reps work a
deal and shows partly through responsiveness, amount and lead source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from features import contract as c

TYPES: tuple[str, ...] = c.ACTIVITY_TYPES  # call email meeting demo inmail social proposal workshop none
SENIORITIES: tuple[str, ...] = c.SENIORITIES  # c_level vp director manager individual_contributor unknown
DEPARTMENTS: tuple[str, ...] = (
    "sales", "marketing", "it", "finance", "operations", "hr", "procurement", "executive", "other",
)
N_OPEN_STAGES = 5  # stage_order 1..5 are open; 6 is closed-won, 0 closed-lost

TYPE_CODE = {name: i for i, name in enumerate(TYPES)}
SENIORITY_CODE = {name: i for i, name in enumerate(SENIORITIES)}
DEPARTMENT_CODE = {name: i for i, name in enumerate(DEPARTMENTS)}
NONE_CODE = TYPE_CODE["none"]
LIVE_TYPES = ("call", "meeting", "demo", "workshop")

# Windows of the contact history the truth reads, and the caps that keep its effects bounded.
TOUCH_WINDOW_DAYS = 7
RESPONSE_WINDOW_DAYS = 30
TOUCH_CAP = 10
OUTPUT_CAP = 3
NEGATIVE_CAP = 2
DAYS_IN_STAGE_CAP = 120.0


def _rows(**rows: tuple[float, ...]) -> dict[str, tuple[float, ...]]:
    return dict(rows)


@dataclass(frozen=True)
class TruthParams:
    """Coefficients of the three logits (saved in ``ground_truth.json``).

    Tables are keyed by name; ``*_stage`` rows hold one value per open stage_order 1..5.
    """

    # --- outcome: the activity's own probability of triggering an advance --------------------
    outcome_intercept: float = -4.9
    # Later stages move more easily: the remaining steps are fewer and better defined.
    outcome_stage: tuple[float, ...] = (0.0, 1.0, 1.4, 1.7, 2.0)
    outcome_type_stage: dict[str, tuple[float, ...]] = field(default_factory=lambda: _rows(
        call=(0.9, 0.8, 0.5, 0.4, 0.5),
        email=(0.2, 0.1, 0.0, 0.0, 0.1),
        meeting=(1.3, 1.5, 1.4, 1.1, 1.2),
        demo=(0.5, 1.8, 1.6, 0.6, 0.2),
        inmail=(0.1, -0.3, -0.6, -0.8, -0.8),
        social=(-0.4, -0.6, -0.8, -1.0, -1.0),
        proposal=(-1.2, -0.3, 1.4, 2.0, 1.6),
        workshop=(0.7, 1.7, 1.9, 1.0, 0.4),
        none=(-1.4, -1.4, -1.4, -1.4, -1.4),
    ))
    outcome_seniority_stage: dict[str, tuple[float, ...]] = field(default_factory=lambda: _rows(
        c_level=(-0.1, 0.2, 0.5, 0.8, 0.9),
        vp=(0.3, 0.4, 0.7, 0.8, 0.8),
        director=(0.4, 0.5, 0.5, 0.4, 0.3),
        manager=(0.3, 0.2, 0.0, -0.2, -0.3),
        individual_contributor=(0.0, -0.2, -0.4, -0.6, -0.7),
        unknown=(-0.4, -0.5, -0.6, -0.7, -0.8),
    ))
    outcome_department_stage: dict[str, tuple[float, ...]] = field(default_factory=lambda: _rows(
        sales=(0.2, 0.1, 0.0, -0.1, -0.2),
        marketing=(0.1, 0.0, -0.1, -0.2, -0.3),
        it=(0.1, 0.3, 0.4, 0.0, -0.2),
        finance=(-0.3, -0.1, 0.2, 0.5, 0.6),
        operations=(0.2, 0.3, 0.3, 0.1, 0.0),
        hr=(-0.4, -0.4, -0.5, -0.5, -0.5),
        procurement=(-0.6, -0.4, 0.0, 0.5, 0.7),
        executive=(0.0, 0.1, 0.3, 0.5, 0.5),
        other=(0.0, 0.0, 0.0, 0.0, 0.0),
    ))
    outcome_personalization: float = 1.2  # per unit of (personalization - 0.5)
    outcome_automated: float = -0.9
    outcome_per_touch_7d: float = -0.22  # fatigue, per earlier touch to the contact this week
    outcome_per_output_30d: float = 0.45  # an engaged contact
    outcome_per_negative_30d: float = -0.7
    outcome_inbound: float = 0.5
    outcome_per_day_in_stage: float = -0.012  # a stalling deal is harder to move
    outcome_rep_skill: float = 1.0
    outcome_quality: float = 0.25  # the only unobservable effect; kept moderate
    outcome_weekend: float = -0.6
    outcome_off_hours: float = -0.3  # hand-made touches before 09:00 or from 18:00

    # --- output: a meaningful response (reply, connect, meeting booked) --------------------------
    output_type: dict[str, float] = field(default_factory=lambda: dict(
        call=-1.4, email=-2.5, meeting=-0.9, demo=-1.0, inmail=-2.8, social=-3.3,
        proposal=-1.2, workshop=-0.8, none=-np.inf,
    ))
    output_seniority: dict[str, float] = field(default_factory=lambda: dict(
        c_level=-0.6, vp=-0.4, director=-0.2, manager=0.0, individual_contributor=0.1, unknown=-0.3,
    ))
    output_personalization: float = 1.4
    output_automated: float = -0.8
    output_per_touch_7d: float = -0.15
    output_per_output_30d: float = 0.4
    output_per_negative_30d: float = -0.8
    output_inbound: float = 1.0
    output_rep_skill: float = 0.4
    output_quality: float = 0.45  # responsiveness: partly reveals the latent quality
    output_weekend: float = -0.5
    output_off_hours: float = -0.2

    # --- negative: a negative reply or an unsubscribe ---------------------------------------------
    negative_type: dict[str, float] = field(default_factory=lambda: dict(
        call=-4.9, email=-4.9, meeting=-6.0, demo=-6.0, inmail=-4.6, social=-5.3,
        proposal=-4.9, workshop=-6.5, none=-np.inf,
    ))
    negative_seniority: dict[str, float] = field(default_factory=lambda: dict(
        c_level=0.5, vp=0.3, director=0.1, manager=0.0, individual_contributor=0.0, unknown=0.0,
    ))
    negative_impersonal: float = 1.0  # per unit of (1 - personalization)
    negative_automated: float = 0.8
    negative_per_touch_7d: float = 0.25
    negative_per_negative_30d: float = 0.8
    negative_inbound: float = -1.5
    negative_quality: float = -0.25
    negative_weekend: float = 0.2

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: _json_safe(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, values: dict) -> TruthParams:
        def back(v):
            if isinstance(v, dict):
                return {k: back(x) for k, x in v.items()}
            if isinstance(v, list):
                return tuple(back(x) for x in v)
            if v is None:
                return -np.inf
            return v

        return cls(**{k: back(v) for k, v in values.items()})

    def tables(self) -> _Tables:
        """The coefficient tables as arrays indexed by code (built once per params object)."""
        cached = self.__dict__.get("_tables")
        if cached is None:
            cached = _Tables.build(self)
            object.__setattr__(self, "_tables", cached)
        return cached


def _json_safe(v):
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and np.isinf(v):
        return None  # JSON has no -inf; None reads back as -inf (impossible output)
    return v


@dataclass(frozen=True)
class _Tables:
    stage: np.ndarray  # [stage-1]
    type_stage: np.ndarray  # [type, stage-1]
    seniority_stage: np.ndarray
    department_stage: np.ndarray
    output_type: np.ndarray
    output_seniority: np.ndarray
    negative_type: np.ndarray
    negative_seniority: np.ndarray
    is_none: np.ndarray

    @classmethod
    def build(cls, p: TruthParams) -> _Tables:
        def mat(table, names):
            return np.array([table.get(n, (0.0,) * N_OPEN_STAGES) for n in names], dtype=float)

        def vec(table, names, default=0.0):
            return np.array([table.get(n, default) for n in names], dtype=float)

        return cls(
            stage=np.array(p.outcome_stage, dtype=float),
            type_stage=mat(p.outcome_type_stage, TYPES),
            seniority_stage=mat(p.outcome_seniority_stage, SENIORITIES),
            department_stage=mat(p.outcome_department_stage, DEPARTMENTS),
            output_type=vec(p.output_type, TYPES),
            output_seniority=vec(p.output_seniority, SENIORITIES),
            negative_type=vec(p.negative_type, TYPES),
            negative_seniority=vec(p.negative_seniority, SENIORITIES),
            is_none=np.array([t == "none" for t in TYPES]),
        )


class Probabilities(NamedTuple):
    p_outcome: np.ndarray
    p_output: np.ndarray
    p_negative: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def true_probabilities(
    params: TruthParams,
    *,
    type_code: np.ndarray,
    stage_order: np.ndarray,
    days_in_stage: np.ndarray,
    quality: np.ndarray,
    rep_skill: np.ndarray,
    seniority_code: np.ndarray,
    department_code: np.ndarray,
    personalization: np.ndarray,
    is_automated: np.ndarray,
    inbound: np.ndarray,
    touches_contact_7d: np.ndarray,
    outputs_contact_30d: np.ndarray,
    negatives_contact_30d: np.ndarray,
    hour: np.ndarray,
    weekday: np.ndarray,
) -> Probabilities:
    """True probabilities of outcome, output and negative output, one per row (vectorized).

    All arguments broadcast against each other. Codes index :data:`TYPES`,
    :data:`SENIORITIES` and :data:`DEPARTMENTS`; ``personalization`` NaN counts as 0.5
    (no information); ``stage_order`` outside 1..5 is clipped. ``weekday`` is 0 = Monday.
    """
    tb = params.tables()
    p = params
    type_code = np.asarray(type_code, dtype=np.int64)
    stage_ix = np.clip(np.asarray(stage_order, dtype=np.int64), 1, N_OPEN_STAGES) - 1
    sen = np.asarray(seniority_code, dtype=np.int64)
    dep = np.asarray(department_code, dtype=np.int64)
    pers = np.asarray(personalization, dtype=float)
    pers = np.where(np.isnan(pers), 0.5, pers)
    auto = np.asarray(is_automated, dtype=bool)
    inb = np.asarray(inbound, dtype=bool)
    touches = np.minimum(np.asarray(touches_contact_7d, dtype=float), TOUCH_CAP)
    outs = np.minimum(np.asarray(outputs_contact_30d, dtype=float), OUTPUT_CAP)
    negs = np.minimum(np.asarray(negatives_contact_30d, dtype=float), NEGATIVE_CAP)
    dis = np.clip(np.asarray(days_in_stage, dtype=float), 0.0, DAYS_IN_STAGE_CAP)
    q = np.asarray(quality, dtype=float)
    skill = np.asarray(rep_skill, dtype=float)
    hour = np.asarray(hour, dtype=float)
    weekend = np.asarray(weekday) >= 5
    off_hours = ((hour < 9) | (hour >= 18)) & ~auto
    is_none = tb.is_none[type_code]
    touch = ~is_none  # a wait has no execution, reaches nobody and tires nobody

    # outcome
    z = (
        p.outcome_intercept
        + tb.stage[stage_ix]
        + tb.type_stage[type_code, stage_ix]
        + tb.seniority_stage[sen, stage_ix] * touch
        + tb.department_stage[dep, stage_ix] * touch
        + touch * (
            p.outcome_personalization * (pers - 0.5)
            + p.outcome_automated * auto
            + p.outcome_per_touch_7d * touches
            + p.outcome_inbound * inb
            + p.outcome_off_hours * off_hours
            + p.outcome_rep_skill * skill
        )
        + p.outcome_per_output_30d * outs
        + p.outcome_per_negative_30d * negs
        + p.outcome_per_day_in_stage * dis
        + p.outcome_quality * q
        + p.outcome_weekend * weekend
    )
    p_outcome = _sigmoid(z)

    # output
    zo = (
        tb.output_type[type_code]
        + tb.output_seniority[sen]
        + p.output_personalization * (pers - 0.5)
        + p.output_automated * auto
        + p.output_per_touch_7d * touches
        + p.output_per_output_30d * outs
        + p.output_per_negative_30d * negs
        + p.output_inbound * inb
        + p.output_rep_skill * skill
        + p.output_quality * q
        + p.output_weekend * weekend
        + p.output_off_hours * off_hours
    )
    p_output = np.where(is_none, 0.0, _sigmoid(zo))

    # negative
    zn = (
        tb.negative_type[type_code]
        + tb.negative_seniority[sen]
        + p.negative_impersonal * (1.0 - pers)
        + p.negative_automated * auto
        + p.negative_per_touch_7d * touches
        + p.negative_per_negative_30d * negs
        + p.negative_inbound * inb
        + p.negative_quality * q
        + p.negative_weekend * weekend
    )
    p_negative = np.where(is_none, 0.0, _sigmoid(zn))
    return Probabilities(p_outcome, p_output, p_negative)


def encode(values, names: tuple[str, ...], default: str) -> np.ndarray:
    """Codes of string values in ``names``; unknown or missing values get ``default``'s code."""
    index = {n: i for i, n in enumerate(names)}
    fallback = index[default]
    return np.array([index.get(v, fallback) if isinstance(v, str) else fallback for v in values], dtype=np.int64)


# --- the truth for one deal state and candidate activities ---------------------------------------

@dataclass
class DealState:
    """A deal at time ``at``: everything the truth function reads besides the candidate activity.

    Build it from a saved dataset with :meth:`simulator.ground_truth.GroundTruth.state`.
    """

    deal_id: str | None
    at: object  # a timestamp (pandas.Timestamp or datetime), UTC
    stage_order: int  # of the latest stage entered strictly before ``at``: 0 lost, 6 won
    days_in_stage: float
    quality: float  # latent, from ground_truth_deals.parquet
    rep_skill: float  # latent, from ground_truth_reps.parquet
    touches_7d: dict[str, int] = field(default_factory=dict)  # contact_id -> touches in [at - 7 days, at)
    outputs_30d: dict[str, int] = field(default_factory=dict)  # contact_id -> meaningful responses
    negatives_30d: dict[str, int] = field(default_factory=dict)  # contact_id -> negative responses

    @property
    def is_open(self) -> bool:
        return 1 <= self.stage_order <= N_OPEN_STAGES


@dataclass
class Candidate:
    """An activity that could be done next: what it is, whom it reaches and when."""

    type: str
    contact_id: str | None = None
    seniority: str = "unknown"
    department: str = "other"
    personalization: float | None = None  # None: no information (counts as 0.5)
    is_automated: bool = False
    direction: str = "outbound"
    hour: float | None = None  # UTC hour; default: the state's time
    weekday: int | None = None  # 0 = Monday; default: the state's time


def true_outcome_probabilities(state: DealState, candidates, params: TruthParams | None = None) -> np.ndarray:
    """True outcome probability of each candidate activity in ``state`` (vectorized).

    ``candidates`` is a list of :class:`Candidate` or a DataFrame with the same column names.
    A closed deal advances no more: every candidate gets 0.
    """
    params = params or TruthParams()
    rows = candidates.to_dict("records") if isinstance(candidates, pd.DataFrame) else [vars(x) for x in candidates]
    n = len(rows)
    if not state.is_open:
        return np.zeros(n)
    at = _timestamp(state.at)

    def col(name, default):
        return [_value(r.get(name), default) for r in rows]

    contacts = col("contact_id", None)
    probs = true_probabilities(
        params,
        type_code=encode(col("type", "none"), TYPES, "none"),
        stage_order=np.full(n, state.stage_order),
        days_in_stage=np.full(n, state.days_in_stage),
        quality=np.full(n, state.quality),
        rep_skill=np.full(n, state.rep_skill),
        seniority_code=encode(col("seniority", "unknown"), SENIORITIES, "unknown"),
        department_code=encode(col("department", "other"), DEPARTMENTS, "other"),
        personalization=np.array(col("personalization", np.nan), dtype=float),
        is_automated=np.array(col("is_automated", False), dtype=bool),
        inbound=np.array([d == "inbound" for d in col("direction", "outbound")]),
        touches_contact_7d=np.array([state.touches_7d.get(cid, 0) for cid in contacts]),
        outputs_contact_30d=np.array([state.outputs_30d.get(cid, 0) for cid in contacts]),
        negatives_contact_30d=np.array([state.negatives_30d.get(cid, 0) for cid in contacts]),
        hour=np.array(col("hour", at.hour + at.minute / 60 + at.second / 3600), dtype=float),
        weekday=np.array(col("weekday", at.weekday()), dtype=np.int64),
    )
    return probs.p_outcome


def true_outcome_probability(state: DealState, candidate: Candidate, params: TruthParams | None = None) -> float:
    """True probability that ``candidate`` done in ``state`` triggers an advance of the deal.

    This is the same function the simulator drew every activity's advance from.
    """
    return float(true_outcome_probabilities(state, [candidate], params)[0])


def _value(v, default):
    """``default`` for None and NaN (a DataFrame's missing value), else ``v``."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return default
    return v


def _timestamp(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
