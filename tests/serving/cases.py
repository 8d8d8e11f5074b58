"""Malformed requests and the error each must produce: shared by in-process and real-server tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BadCase:
    """A malformed request built from a valid item, and the error it must get.

    Attributes:
        name: test id.
        build: valid item -> request body (bytes).
        item: expected ``item`` of the error (None: not about one item).
        field: expected ``field`` of the error.
        path: ``/score`` or ``/rank``.
        status: expected HTTP status.
    """

    name: str
    build: Callable[[dict[str, Any]], bytes]
    item: int | None
    field: str
    path: str = "/score"
    status: int = 422


def _score(items: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"items": items, **extra}).encode()


def _patched(edit: Callable[[dict[str, Any]], None], n_items: int = 1, bad_index: int = 0) -> Callable[[dict], bytes]:
    def build(item: dict[str, Any]) -> bytes:
        items = [copy.deepcopy(item) for _ in range(n_items)]
        edit(items[bad_index])
        return _score(items)

    return build


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Setter for a dotted path inside an item (list indices as numbers)."""

    def edit(item: dict[str, Any]) -> None:
        parts = path.split(".")
        node: Any = item
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        last = parts[-1]
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value

    return edit


_DELETE = object()


def _rank(item: dict[str, Any], **changes: Any) -> bytes:
    body: dict[str, Any] = {"at": item["activity"]["occurred_at"], "history": item.get("history", {}),
                            "deal": item.get("deal"), "contact": item.get("contact"), "account": item.get("account")}
    body = {k: v for k, v in body.items() if v is not None}
    body.update(changes)
    return json.dumps(body).encode()


BAD_CASES: list[BadCase] = [
    BadCase("text-for-number", _patched(_set("activity.personalization", "high")), 0, "activity.personalization"),
    BadCase("text-for-bool", _patched(_set("activity.is_automated", "yes")), 0, "activity.is_automated"),
    BadCase("number-for-text", _patched(_set("activity.type", 5)), 0, "activity.type"),
    BadCase("object-for-list", lambda item: json.dumps({"items": item}).encode(), None, "items"),
    BadCase("text-for-history-table", _patched(_set("history.activities", "none")), 0, "history.activities"),
    BadCase("missing-type", _patched(_set("activity.type", _DELETE)), 0, "activity.type"),
    BadCase("bad-timestamp", _patched(_set("activity.occurred_at", "03/02/2026 3pm")), 0, "activity.occurred_at"),
    BadCase("bad-history-timestamp", _patched(_set("history.activities.2.occurred_at", "soon")), 0,
            "history.activities[2].occurred_at"),
    BadCase("number-for-timestamp", _patched(_set("deal.created_at", 1767225600)), 0, "deal.created_at"),
    BadCase("nan", _patched(_set("activity.duration_s", float("nan"))), 0, "activity.duration_s"),
    BadCase("infinity", _patched(_set("deal.amount", float("inf"))), 0, "deal.amount"),
    BadCase("overflow", lambda item: b'{"items": [{"activity": {"type": "call", "duration_s": 1e999}}]}', 0,
            "activity.duration_s"),
    BadCase("nan-custom-field", _patched(_set("activity.cf_score", float("nan"))), 0, "activity.cf_score"),
    BadCase("object-custom-field", _patched(_set("deal.tier", {"a": 1})), 0, "deal.tier"),
    BadCase("personalization-above-1", _patched(_set("activity.personalization", 1.5)), 0, "activity.personalization"),
    BadCase("personalization-below-0", _patched(_set("activity.personalization", -0.1)), 0, "activity.personalization"),
    BadCase("negative-duration", _patched(_set("activity.duration_s", -30)), 0, "activity.duration_s"),
    BadCase("negative-history-duration", _patched(_set("history.activities.0.duration_s", -1)), 0,
            "history.activities[0].duration_s"),
    BadCase("empty-items", lambda item: _score([]), None, "items"),
    BadCase("empty-item", lambda item: _score([{}]), 0, "activity"),
    BadCase("second-item-bad", _patched(_set("activity.occurred_at", "not a time"), n_items=3, bad_index=1), 1,
            "activity.occurred_at"),
    BadCase("unknown-history-table", _patched(_set("history.activites", [])), 0, "history.activites"),
    BadCase("unknown-request-key", lambda item: _score([item], explian=True), None, "explian"),
    BadCase("text-for-explain", lambda item: _score([item], explain="yes"), None, "explain"),
    BadCase("not-json", lambda item: b'{"items": [', None, "body"),
    BadCase("json-not-object", lambda item: b"[1, 2, 3]", None, "body"),
    BadCase("empty-body", lambda item: b"", None, "body"),
    BadCase("rank-empty-body", lambda item: b"", None, "body", "/rank"),
    BadCase("rank-empty-candidates", lambda item: _rank(item, candidates=[]), None, "candidates", "/rank"),
    BadCase("rank-candidate-without-type", lambda item: _rank(item, candidates=[{"type": "call"}, {"contact_id": "c1"}]),
            None, "candidates[1].type", "/rank"),
    BadCase("rank-bad-at", lambda item: _rank(item, at="tomorrow"), None, "at", "/rank"),
    BadCase("rank-candidate-bad-duration", lambda item: _rank(item, candidates=[{"type": "call", "duration_s": "abc"}]),
            None, "candidates[0].duration_s", "/rank"),
    BadCase("rank-candidate-negative-duration",
            lambda item: _rank(item, candidates=[{"type": "call", "duration_s": -5}]), None,
            "candidates[0].duration_s", "/rank"),
    BadCase("rank-candidate-bad-logged-at", lambda item: _rank(item, candidates=[{"type": "call", "logged_at": "soon"}]),
            None, "candidates[0].logged_at", "/rank"),
    BadCase("rank-candidate-sets-occurred-at",
            lambda item: _rank(item, candidates=[{"type": "call", "occurred_at": "2026-03-02T15:04:00Z"}]), None,
            "candidates[0].occurred_at", "/rank"),
    BadCase("timestamp-out-of-range", _patched(_set("activity.occurred_at", "9999-12-31T23:00:00-05:00")), 0,
            "activity.occurred_at"),
    BadCase("rank-top-k-zero", lambda item: _rank(item, top_k=0), None, "top_k", "/rank"),
    BadCase("rank-personalization", lambda item: _rank(item, candidates=[{"type": "email", "personalization": 2}]),
            None, "candidates[0].personalization", "/rank"),
]


def find_error(body: dict[str, Any], item: int | None, field: str) -> dict[str, Any] | None:
    """The error of ``body`` naming this item and field, if any."""
    for e in body.get("errors", []):
        if e.get("item") == item and e.get("field") == field:
            return e
    return None
