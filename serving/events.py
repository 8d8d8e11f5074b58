"""``POST /events`` and ``DELETE /deals|contacts|accounts/{id}``: writing to the history store.

``POST /events`` takes rows of the contract's tables (shared/API.md): any subset of
``activities``, ``responses``, ``deal_stages``, ``outcomes``, ``deals``, ``contacts``,
``accounts``, ``reps``, in any order, late rows welcome. Every row is checked with the same
models as the rows of a ``/score`` request; one bad row refuses the whole request (422, the
error names table, index and field) and nothing of it is stored. Rows whose key is stored
replace it (idempotent). The answer ``{"stored": {table: n}}`` comes after the transaction is
committed and synced to disk. At most ``ACTIVITY_SCORER_MAX_EVENT_ROWS`` rows per request
(413, the message states the limit) and ``ACTIVITY_SCORER_MAX_BODY_BYTES`` bytes.

The delete endpoints erase the entity and every stored row naming it (see
:meth:`store.base.HistoryStore.delete`) and answer ``{"deleted": {table: n}}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from features import contract as c
from serving.errors import STATUS_INVALID, STATUS_TOO_LARGE, error_body, field_path
from serving.openapi import route_doc
from serving.schemas import (
    _CLOSED_CONFIG,
    Account,
    Count,
    Deal,
    DealStage,
    HistoryActivity,
    HistoryContact,
    Id,
    Outcome,
    Text,
    Timestamp,
    _Row,
)
from serving.schemas import Response as ResponseRow

logger = logging.getLogger(__name__)

STATUS_NO_STORE = 409


class EventActivity(HistoryActivity):
    activity_id: Id


def _stage_fields_null(schema: dict[str, Any]) -> None:
    for name in ("stage", "stage_order", "stage_entered_at"):  # refused unless null: documented so
        schema.get("properties", {})[name] = {"type": "null", "description": "send stages as deal_stages rows"}


class EventDeal(Deal):
    model_config = {**Deal.model_config, "json_schema_extra": _stage_fields_null}

    deal_id: Id

    @model_validator(mode="after")
    def _no_stage(self) -> EventDeal:
        if self.stage is not None or self.stage_order is not None or self.stage_entered_at is not None:
            raise ValueError("a deal's stage is sent as a deal_stages row (deal_id, stage, stage_order, entered_at)")
        return self


class EventAccount(Account):
    account_id: Id
    employees: Count | None = None


class EventRep(_Row):
    rep_id: Id
    team: Text | None = None
    hired_at: Timestamp | None = None


class Events(BaseModel):
    """The body of ``POST /events``: rows per contract table."""

    model_config = _CLOSED_CONFIG

    activities: list[EventActivity] = Field(default_factory=list)
    responses: list[ResponseRow] = Field(default_factory=list)
    deal_stages: list[DealStage] = Field(default_factory=list)
    outcomes: list[Outcome] = Field(default_factory=list)
    deals: list[EventDeal] = Field(default_factory=list)
    contacts: list[HistoryContact] = Field(default_factory=list)
    accounts: list[EventAccount] = Field(default_factory=list)
    reps: list[EventRep] = Field(default_factory=list)


EVENT_TABLES = tuple(Events.model_fields)


def _error(status: int, errors: list[dict[str, Any]]) -> Response:
    return Response(error_body(errors), status_code=status, media_type="application/json")


def _detail(error: dict[str, Any]) -> dict[str, Any]:
    loc = list(error.get("loc") or ())
    table = loc[0] if loc and loc[0] in EVENT_TABLES else None
    index = loc[1] if table is not None and len(loc) > 1 and isinstance(loc[1], int) else None
    rest = loc[2:] if index is not None else loc[1:] if table is not None else loc
    kind = error.get("type", "")
    message = error.get("msg", "")
    if kind == "extra_forbidden":
        message = "unknown field" if table is not None else \
            "unknown table (expected one of: " + ", ".join(EVENT_TABLES) + ")"
    elif kind == "missing":
        message = "required field is missing"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    field = field_path(rest) if rest else ("(row)" if index is not None else field_path(loc) or "body")
    return {"item": index, "table": table, "index": index, "field": field, "message": message}


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is larger than ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_events(raw: bytes, max_rows: int) -> dict[str, list[dict[str, Any]]] | Response:
    """Checked rows per table (dicts ready for the store), or the error response."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _error(STATUS_INVALID, [{"item": None, "table": None, "index": None, "field": "body",
                                        "message": "body is not valid JSON"}])
    if not isinstance(payload, dict):
        return _error(STATUS_INVALID, [{"item": None, "table": None, "index": None, "field": "body",
                                        "message": "expected a JSON object of tables: {\"activities\": [...], ...}"}])
    n = sum(len(v) for v in payload.values() if isinstance(v, list))
    if n > max_rows:
        return _error(STATUS_TOO_LARGE, [{"item": None, "table": None, "index": None, "field": "body",
                                          "message": f"at most {max_rows} rows per request, all tables together "
                                                     f"(got {n}); send them in several requests"}])
    try:
        events = Events.model_validate(payload)
    except ValidationError as err:
        return _error(STATUS_INVALID, [_detail(e) for e in err.errors(include_input=False)][:50])
    return {table: [row.model_dump(exclude_none=True) for row in getattr(events, table)] for table in EVENT_TABLES}


def _access():  # noqa: ANN202
    import bentoml

    return bentoml.get_current_service()


def _no_store() -> Response:
    from serving.store_access import NO_STORE_HINT

    return _error(STATUS_NO_STORE, [{"item": None, "field": "store", "message": NO_STORE_HINT}])


@route_doc({409: "the service runs without a history store (see ACTIVITY_SCORER_STORE)",
            413: "the body or the number of rows is over the limit (the message states it)",
            422: "a bad row: the error names table, index and field; nothing of the request is stored"},
           request=Events)
async def post_events(request: Request) -> Response:
    """Store rows of the contract's tables (any subset, any order, late rows welcome).

    Idempotent: a row whose key is already stored replaces it. Answers ``{"stored": {table: n}}``
    once the rows are durable.
    """
    service = _access()
    store = service.history.store
    if store is None:
        return _no_store()
    raw = await read_body(request, service.max_body_bytes)
    if raw is None:
        return _error(STATUS_TOO_LARGE, [{"item": None, "field": "body", "message":
                                          f"request body is larger than the limit of {service.max_body_bytes} bytes"}])
    rows = parse_events(raw, service.max_event_rows)
    if isinstance(rows, Response):
        return rows
    rows = {t: r for t, r in rows.items() if r}
    stored = await anyio.to_thread.run_sync(store.upsert, rows) if rows else {}
    return JSONResponse({"stored": {t: stored.get(t, 0) for t in EVENT_TABLES if t in rows}})


def _delete_route(entity: str, param: str):  # noqa: ANN202
    @route_doc({409: "the service runs without a history store (see ACTIVITY_SCORER_STORE)"})
    async def delete(request: Request) -> Response:
        service = _access()
        store = service.history.store
        if store is None:
            return _no_store()
        entity_id = request.path_params[param]
        deleted = await anyio.to_thread.run_sync(store.delete, entity, entity_id)
        return JSONResponse({"deleted": deleted})

    delete.__doc__ = (f"Erase the {entity[:-1]} and every stored row that names it; later scores no longer use "
                      f"them. Answers {{\"deleted\": {{table: n}}}}.")
    return delete


def routes() -> list:
    """Starlette routes of the store's write endpoints (mounted by :mod:`serving.service`)."""
    from starlette.routing import Route

    return [
        Route("/events", post_events, methods=["POST"]),
        Route("/deals/{deal_id:str}", _delete_route(c.DEALS, "deal_id"), methods=["DELETE"]),
        Route("/contacts/{contact_id:str}", _delete_route(c.CONTACTS, "contact_id"), methods=["DELETE"]),
        Route("/accounts/{account_id:str}", _delete_route(c.ACCOUNTS, "account_id"), methods=["DELETE"]),
    ]
