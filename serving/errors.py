"""Error bodies: every refused request gets ``{"errors": [{"item", "field", "message"}]}``.

``item`` is the index of the offending item of ``/score`` (null when the error is not about
one item); ``field`` is the path inside the item (``activity.occurred_at``,
``history.activities[3].type``) or inside the request (``items``, ``candidates[2].type``,
``body``). Messages never repeat the caller's values, so error bodies and logs carry no
payload.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from serving.schemas import LIMIT_ERROR

STATUS_INVALID = 422
STATUS_TOO_LARGE = 413
STATUS_UNAUTHORIZED = 401

ITEM_LISTS = ("items",)  # request fields whose index is the "item" of an error


class InvalidRequest(ValueError):
    """The request is well-formed JSON of the right shape but cannot be scored as it is.

    Attributes:
        errors: ``[{"item": int | None, "field": str, "message": str}]``.
        status: HTTP status to answer with (422, or 413 for a size limit).
    """

    def __init__(self, errors: list[dict[str, Any]], status: int = STATUS_INVALID):
        self.errors = errors
        self.status = status
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors[:3]))


def field_path(loc: Sequence[Any]) -> str:
    """``("history", "activities", 3, "type")`` -> ``history.activities[3].type``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def detail_from_pydantic(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error (``type``, ``loc``, ``msg``) -> ``{"item", "field", "message"}``."""
    loc = list(error.get("loc") or ())
    item = None
    if len(loc) >= 2 and loc[0] in ITEM_LISTS and isinstance(loc[1], int):
        item = loc[1]
        loc = loc[2:]
    kind = error.get("type", "")
    if kind == "json_invalid":
        return {"item": None, "field": "body", "message": "body is not valid JSON"}
    if not loc:
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return {"item": item, "field": "body" if item is None else "(item)",
                    "message": "expected a JSON object"}
        return {"item": item, "field": "body" if item is None else "(item)", "message": error.get("msg", "")}
    message = error.get("msg", "")
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required field is missing"
    return {"item": item, "field": field_path(loc), "message": message}


def details_from_pydantic(errors: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Pydantic errors -> error details and the HTTP status (413 when only size limits failed)."""
    errors = list(errors)
    details = [detail_from_pydantic(e) for e in errors]
    only_limits = bool(errors) and all(e.get("type") == LIMIT_ERROR for e in errors)
    return details, STATUS_TOO_LARGE if only_limits else STATUS_INVALID


def error_body(details: list[dict[str, Any]]) -> bytes:
    return json.dumps({"errors": details}, separators=(",", ":")).encode("utf-8")


def unauthorized_body() -> bytes:
    return error_body([{"item": None, "field": "Authorization",
                        "message": "a valid 'Authorization: Bearer <key>' header is required"}])
