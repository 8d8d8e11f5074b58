"""Candidate activities for ``/rank`` when the caller gives none.

Proposals come from what the model learned and what the request shows:

- every activity type among the model's learned levels of ``type`` (``none``, a
  deliberate wait, included once, so "do nothing yet" competes with touching);
- each done by hand and tailored (``is_automated`` false, ``personalization`` 0.9), and,
  for the types a sequence or bulk tool can send (email, InMail, social), also automated
  with a mass template (``is_automated`` true, ``personalization`` 0.1, ``sequence_step``
  1: automated activities in CRM data carry their step, and a row that says automated
  without one is a combination the model never saw);
- ``none`` as recorded in CRM data: not automated, no personalization, no direction;
- for each contact of the request: the request's contact first, then the people touched
  on the deal before ``at`` (most recent first), then the history's other contacts, at
  most ``max_contacts`` of them;

then trimmed to ``max_candidates`` (fewer contacts first). Settings a model never saw
(no ``is_automated`` feature) are left out of the proposals.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from features import contract as c
from features.schema import CATEGORICAL
from models.bundle import FeatureSpec

NONE_TYPE = "none"
AUTOMATABLE_TYPES = ("email", "inmail", "social")
TAILORED = {c.IS_AUTOMATED: False, c.PERSONALIZATION: 0.9}
AUTOMATED = {c.IS_AUTOMATED: True, c.PERSONALIZATION: 0.1, c.SEQUENCE_STEP: 1}
WAIT = {c.IS_AUTOMATED: False}


def learned_types(spec: FeatureSpec) -> list[str]:
    """Activity types the model has levels for (the contract's list if it has none)."""
    if c.TYPE in spec.names:
        f = spec[c.TYPE]
        if f.kind == CATEGORICAL and f.levels:
            return list(f.levels)
    return list(c.ACTIVITY_TYPES)


def variants(spec: FeatureSpec) -> list[dict[str, Any]]:
    """Type x setting combinations, before contacts are attached."""
    use = [k for k in (c.IS_AUTOMATED, c.PERSONALIZATION, c.SEQUENCE_STEP) if k in spec.names]
    out = []
    for t in learned_types(spec):
        if t == NONE_TYPE:
            out.append({c.TYPE: t, **{k: v for k, v in WAIT.items() if k in use}})
            continue
        out.append({c.TYPE: t, **{k: v for k, v in TAILORED.items() if k in use}})
        if t in AUTOMATABLE_TYPES and c.IS_AUTOMATED in use:
            out.append({c.TYPE: t, **{k: v for k, v in AUTOMATED.items() if k in use}})
    return out


def _seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float("-inf")


def contacts_of(request: dict[str, Any], at: datetime, limit: int) -> list[str | None]:
    """Contact ids to propose for, best known first (``[None]`` when there is none).

    ``request`` is a validated ``/rank`` request dumped to plain data (timestamps as datetimes).
    """
    out: list[str] = []
    own = (request.get("contact") or {}).get(c.CONTACT_ID)
    if own:
        out.append(own)
    history = request.get("history") or {}
    at_s = at.timestamp()
    deal_id = (request.get("deal") or {}).get(c.DEAL_ID)
    touched = [
        (_seconds(r.get(c.OCCURRED_AT)), r[c.CONTACT_ID])
        for r in history.get(c.ACTIVITIES) or []
        if r.get(c.CONTACT_ID) and r.get(c.TYPE) != NONE_TYPE and _seconds(r.get(c.OCCURRED_AT)) < at_s
        and (deal_id is None or r.get(c.DEAL_ID) in (None, deal_id))
    ]
    for _, contact_id in sorted(touched, key=lambda x: -x[0]):
        if contact_id not in out:
            out.append(contact_id)
    for r in history.get(c.CONTACTS) or []:
        if r.get(c.CONTACT_ID) and r[c.CONTACT_ID] not in out:
            out.append(r[c.CONTACT_ID])
    return out[:limit] if out else [None]


def propose(spec: FeatureSpec, request: dict[str, Any], at: datetime, max_contacts: int,
            max_candidates: int) -> list[dict[str, Any]]:
    """Candidate activities (dicts of activity columns) for a ``/rank`` request without any."""
    base = variants(spec)
    contacts = contacts_of(request, at, max_contacts)
    while len(contacts) > 1 and len(base) * len(contacts) > max_candidates:
        contacts = contacts[:-1]
    out = []
    for v in base:
        if v[c.TYPE] == NONE_TYPE:
            out.append({**v, c.CONTACT_ID: contacts[0]} if contacts[0] else dict(v))
            continue
        for contact_id in contacts:
            out.append({**v, c.CONTACT_ID: contact_id} if contact_id else dict(v))
    return out[:max_candidates]
