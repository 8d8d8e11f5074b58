"""Scoring by id: ``/score`` items and ``/rank`` requests completed from the history store.

An enrichment step before :class:`serving.scorer.Scorer` runs, so scoring stays one code
path: an item that carries ids (``activity.deal_id``, ``contact_id``, ``account_id``, or a
stored ``activity_id``) gets the deal, contact, account and history the store knew before
the activity's ``occurred_at`` (see :mod:`store.base`). What the request gives wins, per item:
a ``history``, ``deal``, ``contact`` or ``account`` object replaces the stored one (an object
holding nothing but its id is a reference, and is completed from the store); the fields of a
stored activity fill only the fields the request's activity leaves out. An id the store does
not know is scored as an unseen value and listed in the result's ``unseen``.

Without a store, the id-only form (ids and no deal, contact, account or history) is refused
with a 422 that says how to configure one; every other request is scored as before.

Which store: ``ACTIVITY_SCORER_STORE`` (``sqlite:///FILE`` or ``postgresql://...``), else none.
``activity-scorer serve`` sets it to the data home's embedded ``store.db`` when that exists and
the variable is unset, so the service process itself never guesses from its working directory.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import anyio
from pydantic import PrivateAttr

from features import contract as c
from serving.errors import InvalidRequest
from serving.schemas import (
    Account,
    Activity,
    Contact,
    Deal,
    DealStage,
    History,
    HistoryActivity,
    HistoryContact,
    Outcome,
    RankRequest,
    RankResponse,
    Response,
    ScoreItem,
    ScoreRequest,
    ScoreResponse,
)
from serving.settings import Settings

logger = logging.getLogger(__name__)

NO_STORE_HINT = ("this service has no history store: send the deal, contact, account and history with the request, "
                 "or start the service with ACTIVITY_SCORER_STORE (or after 'activity-scorer load'); see docs/store.md")

_ENTITIES = (("deal", c.DEAL_ID, Deal), ("contact", c.CONTACT_ID, Contact), ("account", c.ACCOUNT_ID, Account))
_HISTORY_MODELS = {c.ACTIVITIES: HistoryActivity, c.RESPONSES: Response, c.DEAL_STAGES: DealStage,
                   c.OUTCOMES: Outcome, c.CONTACTS: HistoryContact}


def open_history_store(settings: Settings) -> Any:
    """The store the service reads, or None (see the module docstring).

    Raises:
        store.StoreError: a configured store cannot be opened (the service must not start half-wired).
    """
    from store import open_store

    url = settings.store
    if not url:
        logger.info("no history store (ACTIVITY_SCORER_STORE is not set): scoring by id is off")
        return None
    store = open_store(url)
    logger.info("history store %s (schema v%d)", store.url, store.version())
    return store


def _reference(obj: Any, id_field: str) -> str | None:
    """The id of an object that holds nothing but its id (a reference to the stored one), else None."""
    if obj is None:
        return None
    data = obj.model_dump(exclude_none=True)
    return data.get(id_field) if set(data) == {id_field} else None


def _now() -> datetime:
    return datetime.now(timezone.utc)


class HistoryAccess:
    """The service's view of the history store (``store`` may be None: no store configured).

    Args:
        store: a :class:`store.HistoryStore`, or None.
    """

    def __init__(self, store: Any = None):
        self.store = store

    @property
    def enabled(self) -> bool:
        return self.store is not None

    async def _read(self, fn: Any, *args: Any) -> Any:
        # SQLite reads take a fraction of a millisecond: on the event loop. A server round trip: in a thread.
        if self.store.is_remote:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

    # -- /score -----------------------------------------------------------------------------

    @staticmethod
    def _needs_store(item: ScoreItem) -> bool:
        a = item.activity
        if item.history is not None:
            return False
        if any(getattr(item, name) is not None and _reference(getattr(item, name), key) is None
               for name, key, _ in _ENTITIES):
            return False
        return any(getattr(a, key) is not None for _, key, _ in _ENTITIES) or any(
            _reference(getattr(item, name), key) is not None for name, key, _ in _ENTITIES)

    async def enrich_score(self, request: ScoreRequest) -> tuple[ScoreRequest, list[list[str]] | None]:
        """The request with every item completed from the store; and the unknown id fields per item.

        Raises:
            InvalidRequest: no store, and an item carries only ids.
        """
        if self.store is None:
            errors = [{"item": i, "field": "activity", "message": NO_STORE_HINT}
                      for i, item in enumerate(request.items) if self._needs_store(item)]
            if errors:
                raise InvalidRequest(errors)
            return request, None
        return await self._read(self._enrich_score, request)

    def _enrich_score(self, request: ScoreRequest) -> tuple[ScoreRequest, list[list[str]]]:
        items, unknown = [], []
        for item in request.items:
            new, missing = self._complete_item(item)
            items.append(new)
            unknown.append(missing)
        return ScoreRequest.model_construct(items=items, explain=request.explain), unknown

    def _complete_item(self, item: ScoreItem) -> tuple[ScoreItem, list[str]]:
        given = item.activity.model_dump(exclude_none=True)
        ids = {key: given.get(key) or _reference(getattr(item, name), key) for name, key, _ in _ENTITIES}
        activity_id = given.get(c.ACTIVITY_ID)
        if not any(ids.values()) and activity_id is None:
            return item, []
        stored = self.store.get(c.ACTIVITIES, activity_id, plain=True) if activity_id is not None else None
        if stored is not None:
            given = {**stored, **given}  # the request's fields win
            for _, key, _ in _ENTITIES:
                ids[key] = ids[key] or given.get(key)
        if given.get(c.OCCURRED_AT) is None:
            given[c.OCCURRED_AT] = _now()  # what the scorer would do: scored as happening now
        if not any(ids.values()):
            return _StoredItem.of({**item.model_dump(exclude_none=True), "activity": given}, item.history), []
        ctx = self.store.context_for(given[c.OCCURRED_AT], plain=True, **ids)
        plain: dict[str, Any] = {"activity": given}
        for name, key, _ in _ENTITIES:
            obj = getattr(item, name)
            if obj is not None and _reference(obj, key) is None:
                plain[name] = obj.model_dump(exclude_none=True)  # given in full: replaces the stored one
            elif getattr(ctx, name):
                plain[name] = getattr(ctx, name)
            elif obj is not None:
                plain[name] = obj.model_dump(exclude_none=True)
        if item.history is not None:
            plain["history"] = item.history.model_dump(exclude_none=True)
        else:
            history = dict(ctx.history)
            if activity_id is not None:
                history[c.ACTIVITIES] = [r for r in history[c.ACTIVITIES] if r[c.ACTIVITY_ID] != activity_id]
            plain["history"] = history
        # an unknown id matters only where the store was to supply something: the entity, or the history
        given_in_full = {key for name, key, _ in _ENTITIES
                         if getattr(item, name) is not None and _reference(getattr(item, name), key) is None}
        unknown = [key for key in ctx.unknown if ids.get(key) is not None
                   and (key not in given_in_full or (item.history is None and key != c.ACCOUNT_ID))]
        return _StoredItem.of(plain, item.history), unknown

    @staticmethod
    def mark_score(answer: Any, unknown: list[list[str]] | None) -> Any:
        """Add the unknown id fields of each item to its result's ``unseen``."""
        if unknown and isinstance(answer, ScoreResponse):
            for result, names in zip(answer.results, unknown, strict=True):
                if names:
                    result.unseen = [*result.unseen, *names]
        return answer

    # -- /rank ------------------------------------------------------------------------------

    async def enrich_rank(self, request: RankRequest) -> tuple[RankRequest, list[str] | None]:
        """The ``/rank`` request with its deal, contact, account and history from the store.

        Raises:
            InvalidRequest: no store, and the request names its deal only by id.
        """
        deal_id = request.deal.deal_id if request.deal is not None else None
        if self.store is None:
            if request.history is None and _reference(request.deal, c.DEAL_ID) is not None:
                raise InvalidRequest([{"item": None, "field": "deal", "message": NO_STORE_HINT}])
            return request, None
        if deal_id is None and _reference(request.contact, c.CONTACT_ID) is None:
            return request, None
        return await self._read(self._enrich_rank, request)

    def _enrich_rank(self, request: RankRequest) -> tuple[RankRequest, list[str]]:
        at = request.at or _now()
        deal_id = request.deal.deal_id if request.deal is not None else None
        contact_id = request.contact.contact_id if request.contact is not None else None
        ctx = self.store.context_for(at, deal_id=deal_id, contact_id=contact_id)
        fields = dict(request)
        fields["at"] = at
        for name, key, model in _ENTITIES:
            obj = getattr(request, name)
            if obj is None or _reference(obj, key) is not None:
                row = getattr(ctx, name)
                fields[name] = model.model_construct(**row) if row else obj
        if request.history is None:
            fields["history"] = _history(ctx.history)
        return RankRequest.model_construct(**fields), list(ctx.unknown)

    @staticmethod
    def mark_rank(answer: Any, unknown: list[str] | None) -> Any:
        if unknown and isinstance(answer, RankResponse):
            for entry in answer.ranked:
                entry.unseen = [*entry.unseen, *unknown]
        return answer


class _StoredHistory(History):
    """Stands for a history read from the store: it only counts the rows (for limits and stats)."""

    _n: int = PrivateAttr(0)

    def n_rows(self) -> int:
        return self._n


class _StoredItem(ScoreItem):
    """A ``/score`` item completed from the store, carrying the plain data the scorer reads.

    :meth:`serving.scorer.Scorer.score` reads an item as ``model_dump(exclude_none=True)``; this
    item answers that with the data it was built from (stored timestamps as epoch milliseconds,
    which the feature code takes as such), so thirty or more stored rows are not turned into
    models and back on every request. Any other dump builds the models first.
    """

    _plain: dict | None = PrivateAttr(None)  # (a default, not a factory: pydantic inspects factories per call)

    @classmethod
    def of(cls, plain: dict[str, Any], given_history: History | None) -> _StoredItem:
        history = given_history
        if history is None:
            # every field given: pydantic inspects a default_factory's signature on each construct
            history = _StoredHistory.model_construct(**{table: [] for table in _HISTORY_MODELS})
            history._n = sum(len(v) for v in (plain.get("history") or {}).values())
        item = cls.model_construct(activity=Activity.model_construct(**_typed(c.ACTIVITIES, plain["activity"])),
                                   history=history)
        item._plain = plain
        return item

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs == {"exclude_none": True}:
            return {**self._plain, "activity": dict(self._plain["activity"])}  # the scorer may set occurred_at
        return _models(self._plain).model_dump(**kwargs)


def _typed(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A plain row with its timestamps (epoch ms) as datetimes."""
    from store.rows import from_ms

    spec = c.TABLES[table]
    return {k: from_ms(v) if spec.kind(k) == c.TIMESTAMP and isinstance(v, int) else v for k, v in row.items()}


def _models(plain: dict[str, Any]) -> ScoreItem:
    fields: dict[str, Any] = {"activity": Activity.model_construct(**_typed(c.ACTIVITIES, plain["activity"]))}
    for name, _, model in _ENTITIES:
        if plain.get(name):
            fields[name] = model.model_construct(**_typed(f"{name}s", plain[name]))
    if plain.get("history") is not None:
        fields["history"] = _history({t: [_typed(t, r) for r in rows] for t, rows in plain["history"].items()})
    return ScoreItem.model_construct(**fields)


def _history(rows: dict[str, list[dict[str, Any]]]) -> History:
    """Stored history rows as a :class:`History` (rows were checked when stored: not validated again)."""
    return History.model_construct(**{table: [model.model_construct(**r) for r in rows.get(table, [])]
                                      for table, model in _HISTORY_MODELS.items()})


def store_routes() -> list:
    """The routes that need the store: ``/events``, the deletions, ``/deals/{id}/next`` and the deal page."""
    from serving import deal_page, events

    return [*events.routes(), *deal_page.routes()]
