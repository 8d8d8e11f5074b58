"""The service's ASGI middleware: API keys, body limits, clean error bodies, one log line per request.

:class:`RequestGuard` sits inside BentoML's own middleware (metrics, tracing, timeout) and
in front of the service's routes:

- paths other than health, metrics and the docs need ``Authorization: Bearer <key>`` when
  keys are configured (401 otherwise, before the body is read), and each key is rate limited
  (a token bucket per key and worker process: 429 with ``Retry-After`` once it is empty);
- ``/score`` and ``/rank`` bodies are read here, refused with 413 above
  ``max_body_bytes`` (whatever the transfer encoding) and always parsed as JSON,
  whatever ``Content-Type`` says (curl's default form type included);
- BentoML answers invalid input with 400 and pydantic's error list; that answer is
  rewritten to 422 (413 for size limits) with ``{"errors": [{"item", "field",
  "message"}]}`` (see :mod:`serving.errors`);
- with several worker processes, a keep-alive connection is closed (``Connection: close``)
  after ``keepalive_requests`` API requests: the workers share one listening socket and the
  first to wake accepts a whole burst of connections (16 connections of a client could all
  land on one worker while the other idles); a client reconnecting lands on whichever
  worker is free, so load spreads again within seconds;
- after the response, one INFO line: method, path, status, counts, unseen category
  values, model version and latency. Never the payload, never a key.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from serving.auth import ApiKeys
from serving.errors import (
    STATUS_INVALID,
    STATUS_TOO_LARGE,
    STATUS_UNAUTHORIZED,
    details_from_pydantic,
    error_body,
    unauthorized_body,
)
from serving.scorer import RequestStats

logger = logging.getLogger(__name__)

API_PATHS = frozenset({"/score", "/rank"})
PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/", "/docs.json", "/schema.json"})
PUBLIC_PREFIXES = ("/static_content/", "/assets/")
# HTML pages for people check the same keys themselves (header, or the cookie their sign-in form
# sets: serving/deal_page.py), so that a browser without a key gets a sign-in page, not JSON.
SELF_AUTH_PREFIXES = ("/ui/",)
JSON_CONTENT_TYPE = b"application/json"
STATUS_NOT_FOUND = 404
STATUS_TOO_MANY = 429
_TOO_LARGE = b"<too large>"  # sentinel of _read_body (compared by identity)

# The API method fills the stats of the request it serves (set here, read after the response).
REQUEST_STATS: ContextVar[RequestStats | None] = ContextVar("activity_scorer_request_stats", default=None)


MAX_TRACKED_CONNECTIONS = 4096


@dataclass(frozen=True)
class GuardConfig:
    """What the guard enforces (read from the settings when the server starts).

    Attributes:
        keys: API keys (empty: no authentication).
        max_body_bytes: largest ``/score`` or ``/rank`` body accepted.
        keepalive_requests: API requests served on one connection before it is closed
            (0: never).
        rate_per_s: with keys, requests per second per key before 429 (0: no limit).
        rate_burst: the bucket size of that limit.
    """

    keys: ApiKeys
    max_body_bytes: int
    keepalive_requests: int = 0
    rate_per_s: float = 0.0
    rate_burst: float = 0.0


async def _respond(send: Any, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None
                   ) -> None:
    headers = [(b"content-type", JSON_CONTENT_TYPE), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RequestGuard:
    """ASGI middleware; see the module docstring.

    Args:
        app: the wrapped ASGI app.
        config: keys, body limit, keep-alive limit.
        model_version: returns the served model's version (logged with every request).
        metrics: optional :class:`serving.service.ServiceMetrics`-like object with
            ``observe(path, status, stats)``.
        reload: called when the server starts (ASGI lifespan) for a fresh :class:`GuardConfig`.
    """

    def __init__(self, app: Any, config: GuardConfig, model_version: Callable[[], str] | None = None,
                 metrics: Any = None, reload: Callable[[], GuardConfig] | None = None) -> None:
        self.app = app
        self.config = config
        self._reload = reload
        self._model_version = model_version
        self._version = ""
        self.metrics = metrics
        self._served: OrderedDict[Any, int] = OrderedDict()  # API requests per client connection
        self._buckets: dict[int, list[float]] = {}  # key index -> [tokens, last refill time]

    def _last_on_connection(self, scope: Any) -> bool:
        """Count an API request on its connection; True when the connection should close after it."""
        limit = self.config.keepalive_requests
        client = scope.get("client")
        if not limit or client is None:
            return False
        n = self._served.pop(client, 0) + 1
        if n >= limit:
            return True
        self._served[client] = n
        if len(self._served) > MAX_TRACKED_CONNECTIONS:
            self._served.popitem(last=False)
        return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self._reload is not None:
                self.config = self._reload()
                self._served.clear()
                self._buckets.clear()
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or path.startswith(SELF_AUTH_PREFIXES):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        method = scope.get("method", "")
        stats = RequestStats()
        status_box = [0]
        try:
            keys = self.config.keys
            if keys.enabled:
                key = keys.key_index(_header(scope, b"authorization"))
                if key is None:
                    status_box[0] = STATUS_UNAUTHORIZED
                    await _respond(send, STATUS_UNAUTHORIZED, unauthorized_body(),
                                   [(b"www-authenticate", b'Bearer realm="activity-scorer"')])
                    return
                wait_s = self._take_token(key)
                if wait_s > 0:
                    status_box[0] = STATUS_TOO_MANY
                    await _respond(send, STATUS_TOO_MANY, error_body([{
                        "item": None, "field": "Authorization",
                        "message": f"rate limit of this API key reached ({self.config.rate_per_s:g} requests/s, bursts "
                                   f"of {self.config.rate_burst:g}): retry after {math.ceil(wait_s)} s"}]),
                                   [(b"retry-after", str(math.ceil(wait_s)).encode())])
                    return
            if "\n" in path or "\r" in path:  # BentoML's mount of the store routes cannot match it: a JSON 404
                status_box[0] = STATUS_NOT_FOUND
                await _respond(send, STATUS_NOT_FOUND, error_body([{
                    "item": None, "field": "path", "message": "no route matches a path holding a line break"}]))
                return
            if path not in API_PATHS or method != "POST":
                await self.app(scope, receive, _status_recorder(send, status_box))
                return
            body = await self._read_body(receive)
            if body is None:  # client went away
                return
            if not body.strip():
                status_box[0] = STATUS_INVALID
                await _respond(send, STATUS_INVALID, error_body([{
                    "item": None, "field": "body", "message": "the body is empty: send a JSON object"}]))
                return
            if body is _TOO_LARGE:
                status_box[0] = STATUS_TOO_LARGE
                await _respond(send, STATUS_TOO_LARGE, error_body([{
                    "item": None, "field": "body",
                    "message": f"request body is larger than the limit of {self.config.max_body_bytes} bytes"}]))
                return
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope["headers"].append((b"content-type", JSON_CONTENT_TYPE))
            token = REQUEST_STATS.set(stats)
            try:
                shaper = _ResponseShaper(send, status_box, close=self._last_on_connection(scope))
                await self.app(scope, _replay(body, receive), shaper)
            finally:
                REQUEST_STATS.reset(token)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            n_unseen = sum(stats.unseen.values())
            if self._model_version is not None:  # asked every time: a hot swap changes it
                self._version = self._model_version() or ""
            logger.info("%s %s status=%d items=%d history_rows=%d unseen=%d model=%s ms=%.2f", method, path,
                        status_box[0], stats.items, stats.history_rows, n_unseen, self._version or "-", elapsed_ms)
            if self.metrics is not None:
                self.metrics.observe(path, status_box[0], stats)

    def _take_token(self, key: int) -> float:
        """Take one request from the key's bucket: 0 when allowed, else the seconds until one is."""
        rate, burst = self.config.rate_per_s, max(self.config.rate_burst, 1.0)
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        bucket = self._buckets.setdefault(key, [burst, now])
        bucket[0] = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / rate

    async def _read_body(self, receive: Any) -> bytes | None:
        """The whole body; ``_TOO_LARGE`` as soon as it exceeds the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.config.max_body_bytes:
                    return _TOO_LARGE
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _header(scope: Any, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _status_recorder(send: Any, status_box: list[int]) -> Any:
    async def recorder(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status_box[0] = message["status"]
        await send(message)

    return recorder


class _ResponseShaper:
    """Sends each API response as one start and one body message, with a Content-Length.

    BentoML streams its JSON answers in chunks (chunked transfer encoding: three socket
    writes per response); buffering them costs nothing at these sizes and saves writes.
    Its 400 answer to invalid input is rewritten on the way (see :meth:`_rewrite`).
    """

    def __init__(self, send: Any, status_box: list[int], close: bool = False):
        self.send = send
        self.status_box = status_box
        self.close = close
        self.held: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.held = message
            return
        if self.held is None or kind != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.chunks)
        held, self.held, self.chunks = self.held, None, []
        if held["status"] == 400:
            status, body = self._rewrite(body)
            self.status_box[0] = status
            await _respond(self.send, status, body)
            return
        self.status_box[0] = held["status"]
        headers = [(k, v) for k, v in held.get("headers", ()) if k not in (b"content-length", b"transfer-encoding")]
        headers.append((b"content-length", str(len(body)).encode()))
        if self.close:
            headers.append((b"connection", b"close"))
        await self.send({"type": "http.response.start", "status": held["status"], "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    def _rewrite(self, original: bytes) -> tuple[int, bytes]:
        try:
            payload = json.loads(original)
        except ValueError:
            payload = None
        errors = payload.get("detail") if isinstance(payload, dict) else None
        if not isinstance(errors, list) or not errors:
            message = payload.get("error") if isinstance(payload, dict) else None
            return 400, error_body([{"item": None, "field": "body", "message": str(message or "invalid request")}])
        details, status = details_from_pydantic(e for e in errors if isinstance(e, dict))
        return status, error_body(details)
