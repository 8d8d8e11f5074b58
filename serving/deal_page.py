"""A rep's deal page: ``GET /deals/{deal_id}/next`` (JSON) and ``GET /ui/deals/{deal_id}`` (HTML).

Both rank next-best activities for a stored deal at now (or at ``?at=``, ISO 8601) for the
deal's owner, through the same path as ``POST /rank`` with the deal given by id: the store
fills the deal, its account, contacts and history (:mod:`serving.store_access`), then
:class:`serving.scorer.Scorer` ranks. The page adds the deal's stage and recent activity and
says in plain words what each number means: the estimated effect (with its 90% interval)
when the model has an effect model, else the probabilities.

Keys: the JSON route is behind the request guard (``Authorization: Bearer <key>``). The page
checks the same keys itself, from the header or from an ``HttpOnly; SameSite=Strict`` cookie
that ``/ui/login`` sets from a form, so a key never appears in a URL; a browser without a
valid key gets the sign-in form (401). The HTML is self-contained (inline CSS, no script, no
external resource).
"""

from __future__ import annotations

import html
import json
import logging
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from features import contract as c
from serving.errors import InvalidRequest, error_body
from serving.openapi import route_doc
from serving.schemas import RankRequest

logger = logging.getLogger(__name__)

COOKIE = "activity_scorer_key"
COOKIE_MAX_AGE_S = 8 * 3600
RECENT = 8
MAX_TOP_K = 20
_keys: list = []


class DealNotFound(LookupError):
    pass


def _service():  # noqa: ANN202
    import bentoml

    return bentoml.get_current_service()


def _api_keys():  # noqa: ANN202
    if not _keys:
        from serving.auth import load_api_keys
        from serving.settings import load_settings

        _keys.append(load_api_keys(load_settings()))
    return _keys[0]


def _json_error(status: int, field: str, message: str) -> Response:
    return Response(error_body([{"item": None, "field": field, "message": message}]), status_code=status,
                    media_type="application/json")


def _parse_query(request: Request) -> tuple[datetime, int]:
    """``at`` and ``top_k`` from the query string (ValueError names the parameter).

    Any other parameter is refused, as an unknown key of a JSON body is: a misspelt ``topk`` must not
    silently give the default.
    """
    for name in request.query_params:
        if name not in _QUERY:
            raise ValueError(f"{name}: unknown query parameter (expected {', '.join(_QUERY)})")
    top_k_raw = request.query_params.get("top_k", "5")
    try:
        top_k = int(top_k_raw)
    except ValueError:
        raise ValueError("top_k: expected a whole number") from None
    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k: must be between 1 and {MAX_TOP_K}")
    at_raw = request.query_params.get("at")
    if at_raw is None:
        return datetime.now(timezone.utc), top_k
    try:
        at = datetime.fromisoformat(at_raw.strip())
    except ValueError:
        raise ValueError("at: not an ISO 8601 timestamp (e.g. 2026-03-02T15:04:00Z; in a URL, write + as %2B)") from None
    return (at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)), top_k


def deal_next(service: Any, deal_id: str, at: datetime, top_k: int) -> dict[str, Any]:
    """The deal page's data: the deal, its stage, recent activity and the ranked next activities.

    Raises:
        DealNotFound: the store knows nothing of the deal.
        InvalidRequest: the stored data cannot be scored (e.g. a numeric custom field holding text).
    """
    access = service.history
    store = access.store
    deal = store.get(c.DEALS, deal_id)
    recent = store.recent_activities(deal_id, RECENT, before=at)
    if deal is None and not recent:
        raise DealNotFound(deal_id)
    request, unknown = access._enrich_rank(RankRequest(deal={c.DEAL_ID: deal_id}, at=at, top_k=top_k))
    answer = access.mark_rank(service.scorer.rank(request), unknown)
    history = request.history
    stages = sorted(history.deal_stages, key=lambda s: s.entered_at) if history is not None else []
    stage = stages[-1] if stages else None
    contacts = {r.contact_id: r.model_dump(mode="json", exclude_none=True) for r in (history.contacts if history else [])}
    for cid in {a.get(c.CONTACT_ID) for a in recent} - set(contacts) - {None}:
        row = store.get(c.CONTACTS, cid)
        if row:
            contacts[cid] = _jsonable(row)
    return {
        "deal": _jsonable(deal or {c.DEAL_ID: deal_id}),
        "stage": None if stage is None else {"stage": stage.stage, "stage_order": stage.stage_order,
                                             "entered_at": stage.entered_at.isoformat()},
        "account": None if request.account is None else request.account.model_dump(mode="json", exclude_none=True),
        "contacts": contacts,
        "recent_activities": [_jsonable(a) for a in recent],
        **answer.model_dump(mode="json"),
    }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


async def _compute(request: Request) -> dict[str, Any] | Response:
    service = _service()
    if service.history.store is None:
        from serving.store_access import NO_STORE_HINT

        return _json_error(409, "store", NO_STORE_HINT)
    try:
        at, top_k = _parse_query(request)
    except ValueError as err:
        field, _, message = str(err).partition(": ")
        return _json_error(422, field, message)
    deal_id = request.path_params["deal_id"]
    try:
        return await anyio.to_thread.run_sync(deal_next, service, deal_id, at, top_k)
    except DealNotFound:
        return _json_error(404, "deal_id", "no deal with this id in the history store (send its events to "
                                           "POST /events, or load a dataset)")
    except InvalidRequest as err:
        return Response(error_body(err.errors), status_code=err.status, media_type="application/json")


_QUERY = {"top_k": ("how many activities to return (1 to 20, default 5)",
                    {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K}),
          "at": ("ISO 8601 time to rank for (default: now)", {"type": "string", "format": "date-time"})}
_NO_STORE = "the service runs without a history store (see ACTIVITY_SCORER_STORE)"


@route_doc({404: "the store knows nothing of this deal", 409: _NO_STORE,
            422: "a bad query parameter, or stored data that cannot be scored (the error names it)"}, query=_QUERY)
async def deal_next_json(request: Request) -> Response:
    """`/rank` for a stored deal at `at` (default now), for the deal's owner, with its stage and recent activity."""
    data = await _compute(request)
    return data if isinstance(data, Response) else JSONResponse(data)


# --- the HTML page ------------------------------------------------------------------------------


def _authorized(request: Request) -> bool:
    keys = _api_keys()
    if not keys.enabled:
        return True
    header = request.headers.get("authorization")
    if header and keys.check_header(header.encode("utf-8")):
        return True
    cookie = request.cookies.get(COOKIE)
    return bool(cookie) and keys.check_header(b"Bearer " + unquote(cookie).encode("utf-8"))


@route_doc({401: "no valid API key (header or sign-in cookie): the sign-in page", 404: "no such deal (a page)",
            409: _NO_STORE + " (a page)", 422: "a bad query parameter (a page)"},
           media_type="text/html", query=_QUERY)
async def deal_page(request: Request) -> Response:
    """The next activities for a stored deal as an HTML page for a rep."""
    if not _authorized(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return HTMLResponse(login_html(target), status_code=401)
    data = await _compute(request)
    if isinstance(data, Response):
        message = json.loads(data.body)["errors"][0]
        deal_id = request.path_params["deal_id"]
        return HTMLResponse(message_html(deal_id, data.status_code, message["message"]), status_code=data.status_code)
    return HTMLResponse(page_html(data))


@route_doc(media_type="text/html", query={"next": "page of this service to return to after signing in"})
async def login_form(request: Request) -> Response:
    """The sign-in page of the HTML pages (asks for an API key)."""
    return HTMLResponse(login_html(_safe_next(request.query_params.get("next"))))


@route_doc({303: "signed in: back to the page asked for, with a sign-in cookie",
            401: "the key is not valid (the sign-in page again)", 413: "the form is too large"},
           media_type="text/html", ok=False)
async def login(request: Request) -> Response:
    """Sign in with an API key (form field `key`); the key is kept in an HTTP-only cookie for the pages."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > 4096:
            return HTMLResponse(login_html("/ui/", "The form was too large."), status_code=413)
    form = parse_qs(body.decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = _safe_next((form.get("next") or [""])[0])
    if not _api_keys().check_header(b"Bearer " + key.encode("utf-8")):
        return HTMLResponse(login_html(target, "That key is not valid. Ask whoever runs the service for one."),
                            status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, quote(key, safe=""), max_age=COOKIE_MAX_AGE_S, path="/ui", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


def _safe_next(target: str | None) -> str:
    """Only a page of this service (never another site) is a place to return to after signing in."""
    return target if target and target.startswith("/ui/") and not target.startswith("//") else "/ui/"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:980px;margin:0 auto;padding:24px}
header{background:#fff;border-radius:10px;padding:18px 22px;box-shadow:0 1px 2px #0002}
h1{font-size:22px;margin:0 0 6px} h2{font-size:17px;margin:26px 0 10px}
.muted{color:#5b6473;font-size:14px} .facts span{margin-right:18px}
ol.next{list-style:none;padding:0;margin:0}
ol.next>li{background:#fff;border-radius:10px;padding:14px 18px;margin-bottom:10px;box-shadow:0 1px 2px #0002;
 display:grid;grid-template-columns:34px 1fr 260px;gap:12px;align-items:start}
.rank{font-size:22px;font-weight:700;color:#3b5bdb}
.what{font-size:16px;font-weight:600} .who{font-weight:400;color:#333}
.num{text-align:right} .big{font-size:20px;font-weight:700} .pos{color:#1b7f3b} .neg{color:#b42318}
.why{margin:6px 0 0;padding-left:18px;font-size:14px;color:#333} .why li{margin:2px 0}
.warn{font-size:13px;color:#8a5a00}
table{width:100%;border-collapse:collapse;background:#fff;border-radius:10px;overflow:hidden;box-shadow:0 1px 2px #0002}
th,td{text-align:left;padding:8px 12px;border-bottom:1px solid #eceef2;font-size:14px} th{background:#fafbfc}
.msg{background:#fff;border-radius:10px;padding:24px;box-shadow:0 1px 2px #0002}
form input{font-size:15px;padding:8px;width:320px} form button{font-size:15px;padding:8px 16px}
"""

TYPE_NAMES = {"call": "Call", "email": "Email", "meeting": "Meeting", "demo": "Demo", "inmail": "InMail",
              "social": "Social touch", "proposal": "Send a proposal", "workshop": "Workshop",
              "none": "Wait: no touch for now"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _doc(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>")


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%d %b %Y %H:%M")
    except ValueError:
        return value


def _person(contact_id: str | None, contacts: dict[str, Any]) -> str:
    if not contact_id:
        return "the account"
    row = contacts.get(contact_id) or {}
    seniority = "" if row.get(c.SENIORITY) in (None, "unknown") else row[c.SENIORITY]
    bits = [row.get(c.TITLE) or seniority.replace("_", " ").replace("c level", "C-level")]
    if row.get(c.DEPARTMENT):
        bits.append(row[c.DEPARTMENT])
    desc = ", ".join(b for b in bits if b)
    return f"{contact_id} ({desc})" if desc else str(contact_id)


def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{100 * p:.0f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def _factor_items(factors: list[dict[str, Any]]) -> str:
    return "".join(f"<li>{'▲ raises' if f['effect'] > 0 else '▼ lowers'} the chance: {_e(f['text'])}</li>"
                   for f in factors)


def _main_number(entry: dict[str, Any]) -> str:
    effect = entry.get("effect")
    return _pts(effect) if effect is not None else _pct(entry.get("p_outcome"))


def _candidate_html(k: int, entry: dict[str, Any], contacts: dict[str, Any], common: set[str],
                    negative: dict[str, str] | None = None) -> str:
    a = entry["activity"]
    kind = a.get(c.TYPE, "")
    name = TYPE_NAMES.get(kind, kind.capitalize())
    how = ""
    if kind != "none":
        how = " · sequence / template" if a.get(c.IS_AUTOMATED) else " · by hand, tailored" \
            if a.get(c.IS_AUTOMATED) is False else ""
    who = "" if kind == "none" else f" <span class=\"who\">with {_e(_person(a.get(c.CONTACT_ID), contacts))}</span>"
    effect = entry.get("effect")
    if effect is not None:
        cls = "pos" if effect > 0 else "neg" if effect < 0 else ""
        low, high = entry.get("effect_low"), entry.get("effect_high")
        interval = f"<div class=\"muted\">90% range {100 * low:+.1f} to {_pts(high)}</div>" if low is not None and \
            high is not None else ""
        main = (f"<div class=\"big {cls}\">{_pts(effect)}</div><div class=\"muted\">change in the chance the deal "
                f"advances in 14 days, against not touching</div>{interval}")
    else:
        main = (f"<div class=\"big\">{_pct(entry.get('p_outcome'))}</div><div class=\"muted\">chance the deal "
                f"advances in 14 days if you do this</div>")
    side = (f"<div class=\"muted\" style=\"margin-top:6px\">reply or meeting: {_pct(entry.get('p_output'))}<br>"
            f"negative reply: {_pct(entry.get('p_negative'))}</div>") if kind != "none" else ""
    warn = ""
    if entry.get("overlap") is False:
        warn = "<div class=\"warn\">Few similar cases in the history: this estimate is an extrapolation.</div>"
    who_id = a.get(c.CONTACT_ID)
    if kind != "none" and who_id and who_id in (negative or {}):
        warn += (f"<div class=\"warn\">{_e(who_id)} answered negatively to the touch of {_e(negative[who_id])}: "
                 f"check before contacting them again.</div>")
    if entry.get("unseen"):
        warn += (f"<div class=\"warn\">New to the model: {_e(', '.join(entry['unseen']))} "
                 f"(scored as unseen).</div>")
    why = ""
    factors = [f for f in entry.get("factors") or [] if f.get("text") and f["text"] not in common][:3]
    if factors:
        why = f"<div class=\"muted\">Why this option:</div><ul class=\"why\">{_factor_items(factors)}</ul>"
    return (f"<li><div class=\"rank\">{k}</div><div><div class=\"what\">{_e(name)}{who}"
            f"<span class=\"muted\">{_e(how)}</span></div>{why}{warn}</div><div class=\"num\">{main}{side}</div></li>")


def page_html(data: dict[str, Any]) -> str:
    """The deal page for the data of :func:`deal_next`."""
    deal = data["deal"]
    deal_id = deal.get(c.DEAL_ID)
    contacts = data.get("contacts") or {}
    facts = []
    if deal.get(c.PRODUCT):
        facts.append(f"Product: {_e(deal[c.PRODUCT])}")
    if deal.get(c.AMOUNT) is not None:
        facts.append(f"Amount: {deal[c.AMOUNT]:,.0f}")
    account = data.get("account") or {}
    if account:
        desc = ", ".join(str(x) for x in (account.get(c.INDUSTRY), account.get(c.REGION)) if x)
        facts.append(f"Account: {_e(account.get(c.ACCOUNT_ID))}" + (f" ({_e(desc)})" if desc else ""))
    if deal.get(c.OWNER_REP_ID):
        facts.append(f"Owner: {_e(deal[c.OWNER_REP_ID])}")
    stage = data.get("stage")
    at = data.get("at")
    if stage:
        days = ""
        try:
            d = (datetime.fromisoformat(at) - datetime.fromisoformat(stage["entered_at"])).days
            days = f", for {d} day{'s' if d != 1 else ''}"
        except (TypeError, ValueError):
            pass
        stage_txt = f"Stage: <b>{_e(stage['stage'])}</b> (step {_e(stage['stage_order'])} of the pipeline{days})"
    else:
        stage_txt = "Stage: not recorded"
    closed = " · <b>closed</b>" if deal.get(c.CLOSED_AT) else ""
    ranked_by = data.get("ranked_by")
    order = {"effect": "Ordered by the estimated effect of each activity (net of its cost).",
             "ranking": "Ordered by each activity's own short-term chance of moving the deal.",
             }.get(ranked_by, "Ordered by the chance the deal advances within 14 days.")
    entries = data.get("ranked") or []
    # factors every option shares describe the deal, not the option: shown once, above the list
    texts = [{f["text"] for f in e.get("factors") or [] if f.get("text")} for e in entries]
    common = set.intersection(*texts) if len(texts) > 1 else set()
    shared = [f for f in (entries[0].get("factors") or []) if f.get("text") in common][:3] if entries else []
    standing = (f"<div class=\"msg\" style=\"padding:12px 18px;margin-bottom:10px\"><div class=\"muted\">"
                f"Where the deal stands (the same for every option below):</div><ul class=\"why\">"
                f"{_factor_items(shared)}</ul></div>") if shared else ""
    if len(entries) > 1 and len({_main_number(e) for e in entries}) == 1:
        order += " These options score alike: the order among them means little; pick by what you know."
    negative: dict[str, str] = {}  # contact -> when they last answered negatively (recent activity)
    for a in reversed(data.get("recent_activities") or []):
        if a.get(c.CONTACT_ID) and set(a.get("responses") or []) & c.NEGATIVE_RESPONSES:
            negative[a[c.CONTACT_ID]] = _when(a.get(c.OCCURRED_AT))[:11]
    ranked = "".join(_candidate_html(k, e, contacts, common, negative) for k, e in enumerate(entries, 1))
    if not ranked:
        ranked = "<li><div></div><div>No suggestion: the model proposed no activity.</div><div></div></li>"
    rows = []
    for a in data.get("recent_activities") or []:
        auto = "sequence" if a.get(c.IS_AUTOMATED) else "by hand" if a.get(c.IS_AUTOMATED) is False else ""
        what = "Waited (no touch)" if a.get(c.TYPE) == "none" else TYPE_NAMES.get(a.get(c.TYPE), a.get(c.TYPE))
        rows.append(f"<tr><td>{_e(_when(a.get(c.OCCURRED_AT)))}</td><td>{_e(what)}"
                    f"</td><td>{_e(_person(a.get(c.CONTACT_ID), contacts))}</td><td>{_e(a.get(c.REP_ID))} {_e(auto)}</td>"
                    f"<td>{_e(', '.join(r.replace('_', ' ') for r in a.get('responses') or []) or '—')}</td></tr>")
    recent = ("<table><thead><tr><th>When</th><th>What</th><th>With</th><th>By</th><th>Response</th></tr></thead>"
              f"<tbody>{''.join(rows)}</tbody></table>") if rows else "<p class=\"muted\">No activity recorded yet.</p>"
    model = data.get("model") or {}
    body = (f"<header><h1>Deal {_e(deal_id)}{closed}</h1><div class=\"facts muted\">"
            f"{''.join(f'<span>{f}</span>' for f in facts)}</div><div style=\"margin-top:8px\">{stage_txt}</div></header>"
            f"<h2>What to do next</h2><p class=\"muted\">{order} As of {_e(_when(at))} UTC.</p>"
            f"{standing}<ol class=\"next\">{ranked}</ol>"
            f"<h2>Recent activity</h2>{recent}"
            f"<p class=\"muted\">Model {_e(model.get('name'))}"
            f"{' version ' + _e(model['version']) if model.get('version') else ''}, trained "
            f"{_e(_when(model.get('trained_at')))}. Estimates learned from your team's CRM history; "
            f"they guide, they do not decide.</p>")
    return _doc(f"Deal {deal_id}: what to do next", body)


def message_html(deal_id: str, status: int, message: str) -> str:
    title = "Deal not found" if status == 404 else "This deal cannot be shown"
    hint = (f"<p>There is no deal <b>{_e(deal_id)}</b> in the history store. Check the id in your CRM; a deal "
            f"appears here once its events reach the service.</p>") if status == 404 else f"<p>{_e(message)}</p>"
    return _doc(title, f"<div class=\"msg\"><h1>{_e(title)}</h1>{hint}</div>")


def login_html(target: str, problem: str = "") -> str:
    note = f"<p class=\"neg\">{_e(problem)}</p>" if problem else ""
    body = (f"<div class=\"msg\"><h1>Sign in</h1><p>This page needs the service's API key.</p>{note}"
            f"<form method=\"post\" action=\"/ui/login\"><input type=\"password\" name=\"key\" "
            f"autocomplete=\"current-password\" placeholder=\"API key\" aria-label=\"API key\" required> "
            f"<input type=\"hidden\" name=\"next\" value=\"{_e(_safe_next(target))}\">"
            f"<button type=\"submit\">Sign in</button></form></div>")
    return _doc("Sign in", body)


def routes() -> list:
    from starlette.routing import Route
    from starlette.status import HTTP_405_METHOD_NOT_ALLOWED

    class OnePathRoute(Route):
        """One method of a path served by several routes: a 405 lists every method of the path in ``Allow``."""

        def __init__(self, path: str, endpoint: Any, methods: list[str], allow: list[str]) -> None:
            super().__init__(path, endpoint, methods=methods)
            self.allow = ", ".join(allow)

        async def handle(self, scope: Any, receive: Any, send: Any) -> None:
            if self.methods and scope["method"] not in self.methods:
                # a method the document does not list for the path (OpenAPI declares no answer for those)
                await Response("Method Not Allowed", status_code=HTTP_405_METHOD_NOT_ALLOWED, media_type="text/plain",
                               headers={"Allow": self.allow})(scope, receive, send)
                return
            await super().handle(scope, receive, send)

    return [
        Route("/deals/{deal_id:str}/next", deal_next_json, methods=["GET"]),
        Route("/ui/deals/{deal_id:str}", deal_page, methods=["GET"]),
        OnePathRoute("/ui/login", login_form, methods=["GET"], allow=["GET", "HEAD", "POST"]),
        OnePathRoute("/ui/login", login, methods=["POST"], allow=["GET", "HEAD", "POST"]),
    ]
