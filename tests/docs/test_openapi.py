"""The OpenAPI document declares every answer the service can give (serving/openapi.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from serving import openapi
from serving.errors import STATUS_INVALID, STATUS_TOO_LARGE, STATUS_UNAUTHORIZED

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service():
    from serving.service import ActivityScorer

    return ActivityScorer


@pytest.fixture(scope="module")
def spec(service):
    return openapi.service_openapi(service)


def operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in openapi.HTTP_METHODS:
                yield path, method, op


def test_score_and_rank_declare_every_refusal(spec):
    for path in ("/score", "/rank"):
        responses = spec["paths"][path]["post"]["responses"]
        for status in ("200", "400", "401", "413", "422", "500", "504"):
            assert status in responses, (path, status, sorted(responses))
        for status in ("400", "401", "413", "422"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
    errors = spec["components"]["schemas"]["ErrorResponse"]
    detail = spec["components"]["schemas"]["ErrorDetail"]
    assert errors["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert {"item", "field", "message"} <= set(detail["properties"])


def test_guarded_routes_declare_the_optional_bearer_scheme_and_public_ones_do_not(spec):
    scheme = spec["components"]["securitySchemes"][openapi.SECURITY_SCHEME]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    seen = set()
    for path, method, op in operations(spec):
        if openapi.checks_key_itself(path):
            continue
        if openapi.is_public(path) or "Infrastructure" in op.get("tags", ()):
            assert "401" not in op["responses"] and "security" not in op, (method, path)
        else:
            seen.add(path)
            assert op["security"] == [{openapi.SECURITY_SCHEME: []}, {}], (method, path)
            assert "401" in op["responses"] and "504" in op["responses"], (method, path)
    assert {"/score", "/rank", "/model"} <= seen


def test_mounted_routes_are_in_the_document_with_their_docstring(spec, service):
    mounted = openapi.mounted_routes(service)
    assert ("/model", "get") in {(p, m) for p, m, _ in mounted}
    for path, method, endpoint in mounted:
        op = spec["paths"][path][method]
        assert op["description"], f"{method.upper()} {path}: give {endpoint.__name__} a docstring"


def test_path_parameters_of_a_mounted_route_are_declared():
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def next_for(_):
        """Next activities."""

    class Fake:
        name = "svc"
        mount_apps = [(Starlette(routes=[Route("/deals/{deal_id}/next", next_for, methods=["GET"]),
                                         Route("/contacts/{contact_id:str}", next_for, methods=["DELETE"])]), "/", None)]

    doc = openapi.complete_openapi({"paths": {}}, Fake())
    params = doc["paths"]["/deals/{deal_id}/next"]["get"]["parameters"]
    assert params == [{"name": "deal_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert "/contacts/{contact_id}" in doc["paths"] and "delete" in doc["paths"]["/contacts/{contact_id}"]
    assert "head" not in doc["paths"]["/deals/{deal_id}/next"]
    assert openapi.complete_openapi(doc, Fake()) == doc  # applying it twice changes nothing


def test_route_doc_declares_answers_and_bodies_of_a_mounted_route():
    from pydantic import BaseModel
    from starlette.applications import Starlette
    from starlette.routing import Route

    class Rows(BaseModel):
        activities: list[dict] = []

    class Stored(BaseModel):
        stored: dict[str, int]

    @openapi.route_doc({409: "a conflicting row"}, request=Rows, response=Stored)
    async def post_events(_):
        """Store rows."""

    @openapi.route_doc({404: "no such deal"}, media_type="text/html", query={"top_k": "how many"})
    async def page(_):
        """A page."""

    @openapi.route_doc({303: "signed in"}, ok=False)
    async def sign_in(_):
        """Sign in."""

    class Fake:
        name = "svc"
        mount_apps = [(Starlette(routes=[Route("/sign-in", sign_in, methods=["POST"]),
                                         Route("/events", post_events, methods=["POST"]),
                                         Route("/deals/{deal_id}/page", page, methods=["GET"])]), "/", None)]

    doc = openapi.complete_openapi({"paths": {}}, Fake())
    op = doc["paths"]["/events"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Rows"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Stored"}
    assert op["responses"]["409"]["description"] == "a conflicting row"
    assert {"Rows", "Stored", "ErrorResponse"} <= set(doc["components"]["schemas"])
    ui = doc["paths"]["/deals/{deal_id}/page"]["get"]["responses"]
    assert "text/html" in ui["200"]["content"] and "404" in ui and "401" in ui
    params = doc["paths"]["/deals/{deal_id}/page"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["deal_id", "top_k"] and params[1]["in"] == "query"
    assert "200" not in doc["paths"]["/sign-in"]["post"]["responses"]
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))


def test_every_status_the_serving_code_sends_is_declared(spec):
    """A status literal in serving/*.py (status_code=429, STATUS_X = 413, ...) must be in the document."""
    pattern = re.compile(r"(?:status(?:_code)?\s*[=:]\s*|STATUS_\w+\s*=\s*)([1-5]\d\d)\b")
    sent = set()
    for source in sorted((ROOT / "serving").glob("*.py")):
        sent |= {int(code) for code in pattern.findall(source.read_text(encoding="utf-8"))}
    declared = {int(s) for _, _, op in operations(spec) for s in op["responses"]}
    assert {STATUS_UNAUTHORIZED, STATUS_TOO_LARGE, STATUS_INVALID} <= sent
    missing = sorted(sent - {200} - declared)
    assert not missing, (f"the OpenAPI document declares no route answering {missing}: declare them with "
                         f"@serving.openapi.route_doc(answers=...) on the endpoint that sends them")


def test_the_middleware_serves_the_completed_document():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def bentoml_doc(_):
        return JSONResponse({"paths": {"/score": {"post": {"responses": {"200": {"description": "ok"}}}}}})

    class Fake:
        name = "svc"
        mount_apps = []

        class openapi_spec:  # noqa: N801  (stands for BentoML's property)
            @staticmethod
            def asdict():
                return {"paths": {"/score": {"post": {"responses": {200: {"description": "ok"}}}}}}

    app = openapi.OpenAPIMiddleware(Starlette(routes=[Route("/docs.json", bentoml_doc),
                                                      Route("/other", bentoml_doc)]), Fake())
    with TestClient(app) as client:
        doc = client.get("/docs.json").json()
        assert sorted(doc["paths"]["/score"]["post"]["responses"]) == ["200", "400", "401", "413", "422", "429", "500", "504"]
        assert "400" not in client.get("/other").json()["paths"]["/score"]["post"]["responses"]


@pytest.mark.slow
def test_the_running_service_serves_the_completed_document(tmp_path_factory):
    """The real app (BentoML's own /docs.json behind the hook in serving/service.py)."""
    from tests.serving.conftest import app_client
    from tests.serving.helpers import make_dataset, train_bundle

    bundle = train_bundle(make_dataset(), tmp_path_factory.mktemp("bundle"))
    home = tmp_path_factory.mktemp("home")
    (home / "prometheus").mkdir()
    with app_client(bundle, home, api_keys="docs-test-key-0123456789") as client:
        doc = client.get("/docs.json").json()
        assert "422" in doc["paths"]["/score"]["post"]["responses"]
        assert "get" in doc["paths"]["/model"]
        assert client.get("/model").status_code == 401  # the document tells the truth
        r = client.post("/score", content=b"{}", headers={"Authorization": "Bearer docs-test-key-0123456789"})
        assert r.status_code == 422 and "errors" in r.json()
