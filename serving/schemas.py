"""Request and response models of the HTTP service (shared/API.md).

Field names are the data contract's column names (``features.contract``), so a CRM can
send rows of its tables as they are. Validation refuses what the feature code cannot
use truthfully: wrong JSON types, unparsable timestamps, NaN or infinite numbers,
``personalization`` outside 0..1, negative durations, unknown keys where no custom field
can be. Unknown *category values* (a new activity type, an industry never seen) are
valid: they are scored as unseen values.

Columns beyond the contract's are custom fields (JSON scalars). Timestamps are ISO 8601;
a timestamp without a zone is UTC.

Size limits (items per request, history rows per item, candidates) come from
:mod:`serving.settings`; :func:`set_limits` installs them when the service starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from features import contract as c

LIMIT_ERROR = "limit_exceeded"  # pydantic error type of a size-limit violation (HTTP 413)
MAX_TEXT = 500  # longest string accepted in a contract text field


@dataclass(frozen=True)
class Limits:
    """Request size limits (set from :class:`serving.settings.Settings`)."""

    max_items: int = 100
    max_history_rows: int = 2000
    max_candidates: int = 60


_limits = Limits()


def set_limits(limits: Limits) -> None:
    """Install the size limits the validators enforce (called once at service start)."""
    global _limits
    _limits = limits


def get_limits() -> Limits:
    return _limits


# --- field types ---------------------------------------------------------------------------


_EDGE_DAYS = ("0001-01-01", "9999-12-31")


def _parse_timestamp(value: Any) -> Any:
    """ISO 8601 string (or datetime) -> aware UTC datetime; no zone means UTC."""
    if isinstance(value, str):
        value = value.strip().upper()  # RFC 3339 allows a lower-case t and z
        if value.startswith(_EDGE_DAYS):  # may fall outside years 1..9999 once in UTC: refused whatever the zone
            raise PydanticCustomError("timestamp", "timestamp out of range (0001-01-02 to 9999-12-30)")
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "timestamp", "not an ISO 8601 timestamp (e.g. 2026-03-02T15:04:00Z)"
            ) from None
    elif not isinstance(value, datetime):
        raise PydanticCustomError("timestamp", "expected an ISO 8601 timestamp string")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00: past year 9999 in UTC
        raise PydanticCustomError("timestamp", "timestamp out of range (years 1 to 9999 in UTC)") from None


def _custom_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "custom field value must be a finite number")
        return value
    raise PydanticCustomError("custom_type", "custom field value must be a string, number, boolean or null")


Timestamp = Annotated[datetime, BeforeValidator(_parse_timestamp),
                      WithJsonSchema({"type": "string", "format": "date-time", "pattern": "^(?!0001-01-01|9999-12-31)"})]
# The documented schemas say what validation accepts (fuzzers and generated clients read them): an id may be
# sent as a number (read as its text, as a CSV id is), a custom field holds a JSON scalar.
Id = Annotated[str, Field(coerce_numbers_to_str=True, min_length=1, max_length=MAX_TEXT),
               WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_TEXT}, {"type": "number"}]})]


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``2.0``, ``1e3``) is the integer it denotes (JSON Schema reads it so)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


MAX_INT = 2**53  # whole numbers beyond it are not exact in JSON, nor storable in SQLite's 64-bit INTEGER
Text = Annotated[str, Field(strict=True, max_length=MAX_TEXT)]
Number = Annotated[float, Field(strict=True)]
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_INT), BeforeValidator(_integral)]
Order = Annotated[int, Field(strict=True, ge=-MAX_INT, le=MAX_INT), BeforeValidator(_integral)]
Flag = Annotated[bool, Field(strict=True)]
CustomValue = Annotated[Any, AfterValidator(_custom_value),
                        WithJsonSchema({"type": ["string", "number", "boolean", "null"]})]

_ROW_CONFIG = ConfigDict(extra="allow", allow_inf_nan=False, hide_input_in_errors=True)
_CLOSED_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)


class _Row(BaseModel):
    """A row of a contract table; extra keys are custom fields (JSON scalars)."""

    model_config = _ROW_CONFIG
    __pydantic_extra__: dict[str, CustomValue] = Field(init=False)


# --- the activity and its context --------------------------------------------------------


class Activity(_Row):
    """The activity to score (``activities`` columns); only ``type`` is required.

    Without ``occurred_at`` it is scored as happening when the request arrives.
    """

    activity_id: Id | None = None
    type: Annotated[Text, Field(min_length=1, description="call, email, meeting, ... or any other string")]
    occurred_at: Timestamp | None = None
    rep_id: Id | None = None
    deal_id: Id | None = None
    contact_id: Id | None = None
    account_id: Id | None = None
    direction: Text | None = Field(None, description="outbound or inbound")
    duration_s: Annotated[Number, Field(ge=0)] | None = Field(None, description="seconds; known once it happened")
    personalization: Annotated[Number, Field(ge=0, le=1)] | None = Field(
        None, description="0 = mass template .. 1 = fully tailored")
    is_automated: Flag | None = None
    sequence_step: Count | None = None
    logged_at: Timestamp | None = None


class HistoryActivity(Activity):
    """An earlier activity of the same deal, contact or account (``occurred_at`` required)."""

    occurred_at: Timestamp


class Response(_Row):
    activity_id: Id
    response: Annotated[Text, Field(min_length=1)]
    occurred_at: Timestamp


class DealStage(_Row):
    deal_id: Id
    stage: Text
    stage_order: Order
    entered_at: Timestamp


class Outcome(_Row):
    deal_id: Id
    outcome: Annotated[Text, Field(min_length=1)]
    occurred_at: Timestamp
    contact_id: Id | None = None


class Deal(_Row):
    """The deal (``deals`` columns) plus where it stands at the activity's time."""

    deal_id: Id | None = None
    account_id: Id | None = None
    owner_rep_id: Id | None = None
    created_at: Timestamp | None = None
    amount: Annotated[Number, Field(ge=0)] | None = None
    product: Text | None = None
    closed_at: Timestamp | None = None
    won: Flag | None = None
    stage: Text | None = None
    stage_order: Order | None = None
    stage_entered_at: Timestamp | None = None


class Contact(_Row):
    contact_id: Id | None = None
    account_id: Id | None = None
    title: Text | None = None
    seniority: Text | None = Field(None, description="c_level, vp, director, manager, individual_contributor, unknown")
    department: Text | None = None


class HistoryContact(Contact):
    contact_id: Id


class Account(_Row):
    account_id: Id | None = None
    industry: Text | None = None
    employees: Annotated[Number, Field(ge=0)] | None = None
    region: Text | None = None


def _history_size(value: Any) -> Any:
    if isinstance(value, dict):
        n = sum(len(v) for v in value.values() if isinstance(v, list))
        limit = _limits.max_history_rows
        if n > limit:
            raise PydanticCustomError(LIMIT_ERROR, "at most {limit} history rows per item (got {n})",
                                      {"limit": limit, "n": n})
    return value


class History(BaseModel):
    """Earlier events of the same deal / contact / account. Rows at or after the activity's
    ``occurred_at`` are ignored, so a caller may send whatever it has."""

    model_config = _CLOSED_CONFIG

    activities: list[HistoryActivity] = Field(default_factory=list)
    responses: list[Response] = Field(default_factory=list)
    deal_stages: list[DealStage] = Field(default_factory=list)
    outcomes: list[Outcome] = Field(default_factory=list)
    contacts: list[HistoryContact] = Field(default_factory=list)

    def n_rows(self) -> int:
        return (len(self.activities) + len(self.responses) + len(self.deal_stages) + len(self.outcomes)
                + len(self.contacts))


HistoryField = Annotated[History | None, BeforeValidator(_history_size)]


class ScoreItem(BaseModel):
    """One activity with its context."""

    model_config = _CLOSED_CONFIG

    activity: Activity
    deal: Deal | None = None
    contact: Contact | None = None
    account: Account | None = None
    history: HistoryField = None


class ScoreRequest(BaseModel):
    """``POST /score``: activities (done or planned) to score."""

    model_config = _CLOSED_CONFIG

    items: list[ScoreItem] = Field(description="one result per item, same order", min_length=1)
    explain: Flag = Field(False, description="add the factors behind each p_outcome")

    @field_validator("items", mode="before")
    @classmethod
    def _count_items(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise PydanticCustomError("empty", "at least one item is needed")
            limit = _limits.max_items
            if len(value) > limit:
                raise PydanticCustomError(LIMIT_ERROR, "at most {limit} items per request (got {n})",
                                          {"limit": limit, "n": len(value)})
        return value


_SET_BY_SERVICE = WithJsonSchema({"type": "null", "description": "set by the service: leave it out"})


class Candidate(_Row):
    """A planned activity to rank; unset fields take the deal's defaults.

    Contract columns are typed as in :class:`Activity` (an extra key is a custom field, so an
    undeclared contract column would escape its checks); ``activity_id`` and ``occurred_at``
    are set by the service (every candidate happens at the request's ``at``) and refused.
    """

    type: Annotated[Text, Field(min_length=1)]
    contact_id: Id | None = None
    rep_id: Id | None = None
    deal_id: Id | None = None
    account_id: Id | None = None
    direction: Text | None = None
    duration_s: Annotated[Number, Field(ge=0)] | None = None
    personalization: Annotated[Number, Field(ge=0, le=1)] | None = None
    is_automated: Flag | None = None
    sequence_step: Count | None = None
    logged_at: Timestamp | None = None
    activity_id: Annotated[Any, _SET_BY_SERVICE] = Field(None, exclude=True)
    occurred_at: Annotated[Any, _SET_BY_SERVICE] = Field(None, exclude=True)

    @field_validator("activity_id", "occurred_at", mode="before")
    @classmethod
    def _set_by_the_service(cls, value: Any) -> None:
        if value is not None:
            raise PydanticCustomError("set_by_service", "set by the service: every candidate happens at the request's 'at'")
        return None


class RankRequest(BaseModel):
    """``POST /rank``: next-best activities for one deal at ``at``."""

    model_config = _CLOSED_CONFIG

    deal: Deal | None = None
    contact: Contact | None = None
    account: Account | None = None
    history: HistoryField = None
    at: Timestamp | None = Field(None, description="when the activity would happen (default: now)")
    rep_id: Id | None = Field(None, description="who would do it (default: the deal's owner)")
    candidates: Annotated[list[Candidate], Field(min_length=1)] | None = Field(
        None, description="activities to compare; without them the service proposes candidates from the "
                          "activity types it learned, automated and tailored, for each contact in the history")
    top_k: Annotated[int, Field(strict=True, ge=1), BeforeValidator(_integral)] = 5
    explain: Flag = True

    @field_validator("candidates", mode="before")
    @classmethod
    def _count_candidates(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise PydanticCustomError("empty", "give at least one candidate, or leave candidates out")
            limit = _limits.max_candidates
            if len(value) > limit:
                raise PydanticCustomError(LIMIT_ERROR, "at most {limit} candidates per request (got {n})",
                                          {"limit": limit, "n": len(value)})
        return value


# --- responses -------------------------------------------------------------------------------

EFFECT_UNIT = "log-odds"
EFFECT_DESCRIPTION = (
    "contribution of this feature to the outcome model's raw score, in log-odds (natural log of the "
    "odds, before calibration); positive raises p_outcome, negative lowers it; the contributions of all "
    "features plus a bias sum to the raw score"
)


class Factor(BaseModel):
    """One of the largest contributions to ``p_outcome`` (LightGBM ``pred_contrib``)."""

    feature: str = Field(description="feature name (see GET /model for the catalogue)")
    value: str | float | None = Field(description="the feature's value for this activity (null: unknown)")
    unit: str = Field(description="unit of value")
    effect: float = Field(description=EFFECT_DESCRIPTION)
    text: str = Field(description="plain-language reading of the value")


class ModelRef(BaseModel):
    name: str
    version: str | None = None
    trained_at: str | None = None


class _Scored(BaseModel):
    """A scored activity; ``factors`` is left out of the JSON when explanations were not asked for."""

    @model_serializer(mode="wrap")
    def _drop_absent_factors(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if data.get("factors", ()) is None:
            del data["factors"]
        return data


class ScoreResult(_Scored):
    activity_id: str | None = None
    p_outcome: float | None = Field(None, description="calibrated probability that the deal records an outcome "
                                                      "or advances a stage within the outcome horizon")
    p_output: float | None = Field(None, description="calibrated probability of a meaningful output "
                                                     "(reply, connect, meeting booked) within the output horizon")
    p_negative: float | None = Field(None, description="calibrated probability of a negative output "
                                                       "(negative reply, unsubscribe)")
    factors: list[Factor] | None = Field(None, description="present when explain is true; largest |effect| first")
    unseen: list[str] = Field(default_factory=list,
                              description="features whose category value was not seen in training "
                                          "(scored as unseen)")


class ScoreResponse(BaseModel):
    model: ModelRef
    effect_unit: str = EFFECT_UNIT
    results: list[ScoreResult]


RANKED_BY_RANKING = "ranking"
RANKED_BY_P_OUTCOME = "p_outcome"
RANKED_BY_EFFECT = "effect"


class RankedActivity(_Scored):
    activity: dict[str, Any] = Field(description="the candidate as scored: type, contact, rep, settings, time")
    rank_score: float | None = Field(
        None, description="the ranking model's probability that this activity advances the deal within its "
                          "short horizon (GET /model: ranking.horizon_days, 1 day by default): the activity's own "
                          "effect, what candidates are ordered by; uncalibrated; null when the model has no "
                          "ranking model")
    effect: float | None = Field(
        None, description="estimated change in the probability that the deal advances within the outcome horizon "
                          "if this candidate is done at `at`, against doing nothing (type none): the candidate's own "
                          "effect, learned by attributing each recorded advance to the activities before it "
                          "(GET /model: effects); null when the model has no effect model")
    effect_low: float | None = Field(None, description="lower end of the effect's 90% interval (deal bootstrap)")
    effect_high: float | None = Field(None, description="upper end of the effect's 90% interval (deal bootstrap)")
    overlap: bool | None = Field(
        None, description="false when the training history had too few activities of this kind (type, automated, "
                          "seniority) at this stage: the effect is an extrapolation, and the candidate is ranked "
                          "after every candidate with overlap")
    cost: float | None = Field(None, description="what the candidate costs, in the effect's unit: rep minutes of the "
                                                 "type x the value of a rep hour, plus p_negative x the cost of a "
                                                 "negative response (service settings)")
    net_effect: float | None = Field(None, description="effect - cost: what `ranked_by: effect` orders by")
    guardrail: str | None = Field(None, description="set when the order was changed by a guardrail, and why")
    propensity: float | None = Field(
        None, description="probability that this candidate was shown first (1 or 0 without exploration; with "
                          "exploration the logged propensity, for off-policy evaluation)")
    p_outcome: float | None = Field(None, description="calibrated probability that the deal records an outcome or "
                                                      "advances within the outcome horizon (14 days) if this "
                                                      "activity is done: mostly the deal's own prospects")
    p_output: float | None = None
    p_negative: float | None = None
    factors: list[Factor] | None = None
    unseen: list[str] = Field(default_factory=list)


class RankResponse(BaseModel):
    model: ModelRef
    effect_unit: str = EFFECT_UNIT
    at: str
    n_candidates: int = Field(description="candidates scored (given or proposed)")
    proposed: bool = Field(description="true when the service proposed the candidates")
    ranked_by: str = Field(RANKED_BY_P_OUTCOME,
                           description="'effect': best net_effect first (the bundle's effect model; candidates "
                                       "without overlap last); 'ranking': best rank_score first (a bundle with "
                                       "a ranking model and no effect model); 'p_outcome': best p_outcome first")
    explored: bool = Field(False, description="true when exploration chose the first entry at random (its "
                                              "propensity is logged)")
    ranked: list[RankedActivity] = Field(description="best first, by ranked_by")


class ErrorDetail(BaseModel):
    item: int | None = Field(description="index of the offending item (null: not about one item)")
    field: str = Field(description="path of the offending field inside the item (or the request)")
    message: str


class ErrorResponse(BaseModel):
    errors: list[ErrorDetail]


# Table of each row model, used to check custom fields against the model's.
ROW_TABLES: dict[type[BaseModel], str] = {
    Activity: c.ACTIVITIES,
    HistoryActivity: c.ACTIVITIES,
    Candidate: c.ACTIVITIES,
    Deal: c.DEALS,
    Contact: c.CONTACTS,
    HistoryContact: c.CONTACTS,
    Account: c.ACCOUNTS,
}
