"""Work-arounds for BentoML 1.4 server behaviour that hurt a low-latency service.

1. **Per-request timeout timers that are never cancelled.** BentoML's
   ``TimeoutMiddleware`` (``bentoml/_internal/server/http/traffic.py``) calls
   ``loop.call_later(timeout, ...)`` for every request and never cancels the handle. A
   timer handle keeps its future and a copy of the request's ``contextvars`` context (what
   the tracing and context middleware have set; with a tracing exporter, the recorded
   span and what it references), so every request leaves objects alive for the whole
   timeout (60 s by default): about 21 per request without an exporter. Under steady load
   that is hundreds of thousands of objects: they age into the oldest garbage-collector
   generation and each full collection walks all of them, so pauses grow to hundreds of
   milliseconds (181 ms mean at 16 connections, docs/serving.md). :class:`CancellingTimeoutMiddleware` keeps the same contract (a 504 JSON
   answer when no response has started within the timeout) but schedules its timer in an
   empty context and cancels it as soon as the response starts. :func:`install` makes
   BentoML build it in place of its own class.

2. **Start-up heap in the collector's way.** After the model is loaded,
   :func:`freeze_startup_heap` moves every object alive at that point (modules, the
   boosters, pydantic schemas) into the permanent generation, so full collections only
   walk what requests allocate.

3. **Validation tracebacks in the log.** BentoML logs every request that fails input
   validation as an ERROR with a traceback whose text can quote the request.
   :class:`ValidationLogFilter` drops those records; the service logs one line per request
   itself (status, counts, never the payload).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
from typing import Any

logger = logging.getLogger(__name__)

BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _make_timeout_middleware(base: type) -> type:
    from starlette.responses import JSONResponse

    class CancellingTimeoutMiddleware(base):  # type: ignore[misc, valid-type]
        """BentoML's request timeout without the retained per-request timer (see module doc)."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] not in ("http", "websocket"):
                return await self.app(scope, receive, send)
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            # An empty context: the handle must not keep the request's span alive.
            handle = loop.call_later(self.timeout, _expire, waiter, context=contextvars.Context())

            async def _send(message: Any) -> None:
                if not waiter.done():
                    waiter.set_result(None)
                    handle.cancel()
                await send(message)

            task = asyncio.ensure_future(self.app(scope, receive, _send))
            task.add_done_callback(lambda t: waiter.done() or waiter.set_result(None))
            try:
                await waiter
            except asyncio.TimeoutError:
                if task.cancel():
                    logger.warning("%s %s: no response within %gs, answered 504", scope.get("method", ""),
                                   scope.get("path", ""), self.timeout)
                    resp = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                                        status_code=504)
                    await resp(scope, receive, send)
                    return
            finally:
                handle.cancel()
            await task

    CancellingTimeoutMiddleware.__qualname__ = CancellingTimeoutMiddleware.__name__
    CancellingTimeoutMiddleware.__module__ = __name__
    return CancellingTimeoutMiddleware


_installed: type | None = None


def install() -> type:
    """Make BentoML use :class:`CancellingTimeoutMiddleware` (idempotent); returns the class.

    BentoML imports ``TimeoutMiddleware`` from its ``traffic`` module each time it builds
    an app, so replacing the module attribute before the app is built is enough.
    """
    global _installed
    from bentoml._internal.server.http import traffic

    if _installed is not None and traffic.TimeoutMiddleware is _installed:
        return _installed
    base = traffic.TimeoutMiddleware
    _installed = _make_timeout_middleware(base)
    traffic.TimeoutMiddleware = _installed
    logging.getLogger(BENTOML_HTTP_LOGGER).addFilter(ValidationLogFilter())
    return _installed


class ValidationLogFilter(logging.Filter):
    """Drop BentoML's traceback records for requests that failed input validation."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from pydantic import ValidationError

        return not isinstance(exc, ValidationError)


class GcWatch:
    """Times garbage collections of the older generations and reports ``observe(generation, seconds)``.

    Registered with :data:`gc.callbacks`. Generation-0 collections (many per request, short)
    are not reported, to keep the cost negligible; the long pauses the fixes above are about
    are generation-2 collections, so the service exports generations 1 and 2.
    """

    def __init__(self, observe: Any, min_generation: int = 1) -> None:
        import time

        self._clock = time.perf_counter
        self._observe = observe
        self._min_generation = min_generation
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation", 0) < self._min_generation:
            return
        if phase == "start":
            self._started = self._clock()
        else:
            self._observe(info["generation"], self._clock() - self._started)

    def install(self) -> GcWatch:
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self


def refreeze_heap() -> int:
    """After a model swap: freeze the new bundle's objects too, without a full collection.

    A full ``gc.collect()`` of the service's heap takes 150-200 ms on the 2-core machine, all of it on
    the event loop (every request waits). It is not needed: the old bundle's objects (boosters, arrays,
    the spec) hold no reference cycles and are freed by reference counting when the last request that
    uses them is answered, frozen or not. ``unfreeze`` and ``freeze`` only move lists (no scan).
    """
    gc.unfreeze()
    gc.freeze()
    return gc.get_freeze_count()


def freeze_startup_heap() -> int:
    """Collect, then move every live object to the permanent generation; returns their number."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
