"""The service's OpenAPI document, completed: every status code, the API-key scheme, the mounted routes.

BentoML 1.4 declares the same four answers for every ``@bentoml.api`` route (200, and 400,
404, 500 with its own error bodies) and nothing at all for routes of a mounted ASGI app
(``GET /model``); the decorator has no parameter to declare more. Generated clients and
fuzzers read the document, so :func:`complete_openapi` post-processes it from what the code
does:

- every route outside :data:`serving.middleware.PUBLIC_PATHS` may answer 401 when API keys
  are configured, and declares the ``bearerAuth`` scheme as optional (``[{bearerAuth: []},
  {}]``: the service runs without keys by default); routes that check the key themselves
  (``SELF_AUTH_PREFIXES``, the HTML pages) declare their own 401 with :func:`route_doc`;
- the routes whose bodies the request guard reads (:data:`serving.middleware.API_PATHS`)
  answer 413 (body or size limit) and 422 (invalid input), and their 400 carries the same
  ``ErrorResponse`` body, since the guard rewrites every 400 there;
- every service route may answer 504 (the request timeout, :mod:`serving.runtime`) and 500;
- routes of mounted Starlette apps are added with their docstring, path parameters and
  answers; such an endpoint declares what else it answers, and its request and response
  models, with :func:`route_doc` (a plain Starlette route has no schema BentoML could read).

:class:`OpenAPIMiddleware` serves the completed document at ``/docs.json`` (the Swagger UI at
``/`` reads it); ``docs/api.md`` is generated from the same function.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from typing import Any

from serving.errors import STATUS_INVALID, STATUS_TOO_LARGE, STATUS_UNAUTHORIZED
from serving import middleware
from serving.middleware import API_PATHS, PUBLIC_PATHS, PUBLIC_PREFIXES
from serving.schemas import ErrorResponse

logger = logging.getLogger(__name__)

OPENAPI_PATH = "/docs.json"
REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerAuth"
APP_TAG = "Service APIs"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
STATUS_TIMEOUT = 504
STATUS_INTERNAL = 500
STATUS_BAD_REQUEST = 400
STATUS_NOT_FOUND = 404
STATUS_TOO_MANY = 429
OPENAPI_VERSION = "3.1.0"

# What each declared status means; the descriptions are what clients and docs/api.md show.
DESCRIPTIONS: dict[int, str] = {
    STATUS_BAD_REQUEST: "The body could not be read as a request of this endpoint (errors name the field).",
    STATUS_UNAUTHORIZED: "API keys are configured and the request has no valid 'Authorization: Bearer <key>' "
                         "header. No score is computed.",
    STATUS_TOO_LARGE: "The body is larger than ACTIVITY_SCORER_MAX_BODY_BYTES, or the request has more items, "
                      "history rows or candidates than the configured limits; the message states the limit.",
    STATUS_INVALID: "Invalid input: each error names the item index and the field, and says what is wrong.",
    STATUS_INTERNAL: "An unexpected failure of the service (a bug: please report it with the request log line).",
    STATUS_TIMEOUT: "No answer within the request timeout (ACTIVITY_SCORER_TIMEOUT_S).",
    STATUS_TOO_MANY: "API keys are configured and this key made more requests than its rate limit "
                     "(ACTIVITY_SCORER_RATE_LIMIT_PER_S, bursts of ACTIVITY_SCORER_RATE_LIMIT_BURST); Retry-After says "
                     "when to try again.",
    STATUS_NOT_FOUND: "No such resource; also a path that names no route (an id holding a line break or '/').",
}


ROUTE_DOC_ATTR = "__openapi_route__"


def route_doc(answers: dict[int, str] | None = None, *, request: Any = None, response: Any = None,
              media_type: str = "application/json", query: dict[str, str] | None = None,
              ok: bool = True) -> Any:
    """Declare, on a mounted route's endpoint, what the OpenAPI document cannot read from it.

    Args:
        answers: status -> when it is answered, beyond 200 and what every guarded route answers
            (401, 500, 504), e.g. ``{404: "no such deal", 409: "..."}``.
        request: pydantic model of the JSON body, if the route reads one.
        response: pydantic model of the 200 body.
        media_type: media type of the 200 body (``text/html`` for a page).
        query: query parameter -> what it means (all optional); or -> ``(meaning, JSON schema)`` when the
            value is not any string (``{"type": "integer", "minimum": 1}``), so fuzzers and clients send
            what the route accepts.
        ok: False for a route that never answers 200 (a form post answered with a redirect).

    Returns:
        A decorator that returns the endpoint unchanged, with the declaration attached.
    """

    def attach(endpoint: Any) -> Any:
        setattr(endpoint, ROUTE_DOC_ATTR, {"answers": dict(answers or {}), "request": request,
                                           "response": response, "media_type": media_type,
                                           "query": dict(query or {}), "ok": ok})
        return endpoint

    return attach


def _model_ref(model: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": REF.format(model=model.__name__)}


def _apply_route_doc(operation: dict[str, Any], endpoint: Any, schemas: dict[str, Any]) -> None:
    declared = getattr(endpoint, ROUTE_DOC_ATTR, None)
    if not declared:
        return
    responses = operation.setdefault("responses", {})
    if declared["response"] is not None:
        responses["200"] = {"description": "Successful Response",
                            "content": {declared["media_type"]: {"schema": _model_ref(declared["response"], schemas)}}}
    elif declared["media_type"] != "application/json":
        responses["200"] = {"description": "Successful Response",
                            "content": {declared["media_type"]: {"schema": {"type": "string"}}}}
    if declared["request"] is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _model_ref(declared["request"], schemas)}}}
    if not declared["ok"]:
        responses.pop("200", None)
    for name, text in declared["query"].items():
        text, schema = text if isinstance(text, tuple) else (text, {"type": "string"})
        params = operation.setdefault("parameters", [])
        if all(p.get("name") != name for p in params):
            params.append({"name": name, "in": "query", "required": False, "description": text, "schema": schema})
    for status, text in declared["answers"].items():
        if status < 400:
            content = None
        elif declared["media_type"] == "application/json":
            content = _error_ref()
        else:
            content = {declared["media_type"]: {"schema": {"type": "string"}}}
        responses[str(status)] = {"description": text, **({"content": content} if content else {})}


def _error_ref() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}


def _timeout_body() -> dict[str, Any]:
    return {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}


def is_public(path: str) -> bool:
    """True for the paths the request guard lets through without an API key (health, metrics, docs)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def checks_key_itself(path: str) -> bool:
    """True for the routes that check the API key themselves (pages that answer with a sign-in form)."""
    return path.startswith(tuple(getattr(middleware, "SELF_AUTH_PREFIXES", ())))


def _operation_id(service_name: str, method: str, path: str) -> str:
    return f"{service_name}__{method}_" + (re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root")


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{([^}:]+)(?::[^}]*)?}", path)]


def _join(prefix: str, path: str) -> str:
    joined = "/" + "/".join(p for p in (prefix.strip("/"), path.strip("/")) if p)
    return re.sub(r"{([^}:]+):[^}]*}", r"{\1}", joined)


def mounted_routes(service: Any) -> list[tuple[str, str, Any]]:
    """``(path, method, endpoint)`` of the routes of the service's mounted Starlette apps (HEAD left out)."""
    found = []
    for app, prefix, _ in getattr(service, "mount_apps", ()):
        for route in getattr(app, "routes", ()) or ():
            methods = getattr(route, "methods", None)
            path = getattr(route, "path", None)
            if not methods or path is None:
                continue
            for method in sorted(m.lower() for m in methods if m.upper() != "HEAD"):
                found.append((_join(prefix, path), method, getattr(route, "endpoint", None)))
    return found


def _describe(endpoint: Any) -> str:
    doc = getattr(endpoint, "__doc__", None) or ""
    return " ".join(doc.split())


def complete_openapi(spec: dict[str, Any], service: Any = None) -> dict[str, Any]:
    """The OpenAPI document ``spec`` (as JSON data) with every answer the service can give.

    Args:
        spec: BentoML's document (``service.openapi_spec.asdict()`` or the JSON of ``/docs.json``).
        service: the BentoML service, whose mounted apps' routes are added; ``None`` adds none.

    Returns:
        A new document; ``spec`` is not changed. Applying it twice gives the same document.
    """
    doc = json.loads(json.dumps(copy.deepcopy(spec)))  # status keys as strings, as in JSON
    # BentoML labels the document 3.0.2 but writes pydantic's JSON Schema (``{"type": "null"}``, type lists):
    # OpenAPI 3.1, whose schemas are JSON Schema 2020-12. A 3.0 reader would reject the nulls the service accepts.
    doc["openapi"] = OPENAPI_VERSION
    paths: dict[str, dict[str, Any]] = doc.setdefault("paths", {})
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    service_name = getattr(service, "name", "service")
    for path, method, endpoint in mounted_routes(service) if service is not None else ():
        operation = paths.setdefault(path, {}).setdefault(method, {})
        operation.setdefault("tags", [APP_TAG])
        operation.setdefault("description", _describe(endpoint))
        operation.setdefault("operationId", _operation_id(service_name, method, path))
        params = _path_parameters(path)
        if params:
            operation.setdefault("parameters", params)
        responses = operation.setdefault("responses", {"200": {
            "description": "Successful Response", "content": {"application/json": {"schema": {"type": "object"}}}}})
        if params:
            responses.setdefault(str(STATUS_NOT_FOUND), {"description": DESCRIPTIONS[STATUS_NOT_FOUND]})
        _apply_route_doc(operation, endpoint, schemas)
    for path, item in paths.items():
        for method, operation in item.items():
            if method not in HTTP_METHODS or "Infrastructure" in operation.get("tags", ()):
                continue
            responses = operation.setdefault("responses", {})
            if path in API_PATHS and method == "post":
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True  # no body is a 422 naming the first field
                    _complete_body_schema(operation["requestBody"], schemas)
                for status in (STATUS_BAD_REQUEST, STATUS_TOO_LARGE, STATUS_INVALID):
                    responses[str(status)] = {"description": DESCRIPTIONS[status], "content": _error_ref()}
            if not is_public(path) and not checks_key_itself(path):
                responses[str(STATUS_UNAUTHORIZED)] = {"description": DESCRIPTIONS[STATUS_UNAUTHORIZED],
                                                       "content": _error_ref()}
                responses[str(STATUS_TOO_MANY)] = {"description": DESCRIPTIONS[STATUS_TOO_MANY], "content": _error_ref(),
                                                   "headers": {"Retry-After": {"description": "seconds to wait",
                                                                               "schema": {"type": "integer"}}}}
                operation["security"] = [{SECURITY_SCHEME: []}, {}]
            responses.setdefault(str(STATUS_INTERNAL), {"description": DESCRIPTIONS[STATUS_INTERNAL]})
            responses[str(STATUS_TIMEOUT)] = {"description": DESCRIPTIONS[STATUS_TIMEOUT], "content": _timeout_body()}
            operation["responses"] = dict(sorted(responses.items()))
    components = doc["components"]
    error_schema = ErrorResponse.model_json_schema(ref_template=REF)
    for name, schema in error_schema.pop("$defs", {}).items():
        schemas[name] = schema
    schemas["ErrorResponse"] = error_schema
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http", "scheme": "bearer",
        "description": "Needed only when the service is configured with API keys (ACTIVITY_SCORER_API_KEYS or "
                       "ACTIVITY_SCORER_API_KEYS_FILE); health, metrics and docs never need it.",
    }
    merge_type_unions(components["schemas"])
    merge_type_unions(paths)
    return doc


def _complete_body_schema(body: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A request body's inline schema replaced by its component's: BentoML's copy drops the ``null`` of optional fields."""
    content = body.get("content", {}).get("application/json", {})
    title = (content.get("schema") or {}).get("title")
    if title in schemas:
        content["schema"] = copy.deepcopy(schemas[title])


def merge_type_unions(node: Any) -> Any:
    """``anyOf`` of plain typed schemas (``[{type: string, maxLength: 9}, {type: null}]``) as one schema with a
    type list (``{type: [string, null], maxLength: 9}``), nested unions flattened; in place, returns ``node``.

    The same set of values in JSON Schema; Schemathesis' negative generator reads the merged form correctly
    but takes ``null`` for a type error in the union form. Unions holding a ``$ref`` or two schemas of one
    type are left alone.
    """
    if isinstance(node, list):
        for value in node:
            merge_type_unions(value)
        return node
    if not isinstance(node, dict):
        return node
    for value in node.values():
        merge_type_unions(value)
    branches = node.get("anyOf")
    if not isinstance(branches, list):
        return node
    flat: list[Any] = []
    for branch in branches:
        nested = branch.get("anyOf") if isinstance(branch, dict) and set(branch) <= {"anyOf", "description"} else None
        flat.extend(nested if isinstance(nested, list) else [branch])
    if not all(isinstance(b, dict) and isinstance(b.get("type"), (str, list)) for b in flat):
        return node
    types = [t for b in flat for t in ([b["type"]] if isinstance(b["type"], str) else b["type"])]
    merged: dict[str, Any] = {}
    for branch in flat:
        for key, value in branch.items():
            if key != "type" and merged.setdefault(key, value) != value:
                return node  # two branches constrain one keyword differently: keep the union
    if len(set(types)) != len(types):
        return node
    del node["anyOf"]
    node.update({**merged, **{k: v for k, v in node.items() if k != "type"}, "type": types})
    return node


def service_openapi(service: Any) -> dict[str, Any]:
    """The completed OpenAPI document of a BentoML service, without starting it."""
    return complete_openapi(service.openapi_spec.asdict(), service)


class OpenAPIMiddleware:
    """ASGI middleware: answers ``GET /docs.json`` with the completed document.

    The document is built from the service once, on the first request, and kept.

    Args:
        app: the wrapped ASGI app.
        service: the BentoML service the document describes.
    """

    def __init__(self, app: Any, service: Any) -> None:
        self.app = app
        self.service = service
        self._body: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != OPENAPI_PATH or scope.get("method") != "GET":
            return await self.app(scope, receive, send)
        if self._body is None:
            self._body = json.dumps(service_openapi(self.service)).encode("utf-8")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self._body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self._body, "more_body": False})
