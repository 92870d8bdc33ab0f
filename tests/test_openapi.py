"""The OpenAPI document (node/http/openapi.json) says what the node does.

Every route and method of the app is in the document and every path in it is
a route of the app; the document is valid OpenAPI 3, documents its errors as
the JSON error every error answer is, and the node serves it without auth.
(tests/test_fuzz.py checks a live node's answers against it.)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from node.app import create_app
from node.config import Config
from node.http.openapi import load_document

DOCUMENT: dict[str, Any] = orjson.loads(load_document())
README = Path(__file__).parent.parent / "README.md"
TOKEN = "openapi-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

# The catch-all that answers 404 for every unknown path: not an API route.
UNKNOWN_ROUTE = "/{tail}"
# Routes are added for every method ("*") and their handlers answer 405 to the
# ones they do not take, so methods are found by asking: a route takes a
# method when it does not answer 405.
PROBED = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
OPERATION_KEYS = {"get", "head", "post", "put", "delete", "patch", "options", "trace"}


def app_paths(app: web.Application) -> set[str]:
    """The app's route paths, in OpenAPI's template form (``/kv/{key}``)."""
    paths = {resource.canonical for resource in app.router.resources()}
    return paths - {UNKNOWN_ROUTE}


def documented_methods(path: str) -> set[str]:
    return {method.upper() for method in DOCUMENT["paths"][path] if method in OPERATION_KEYS}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in OPERATION_KEYS
    ]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/components/...``) to what it names."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def a_node_app() -> web.Application:
    return create_app(Config(host="127.0.0.1", auth_token=(TOKEN,)), self_id="127.0.0.1:7000")


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(a_node_app(), host="127.0.0.1")) as client:
        yield client


def test_the_document_is_valid_openapi_3() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.")


def test_every_route_of_the_app_is_a_path_of_the_document_and_back() -> None:
    assert app_paths(a_node_app()) == set(DOCUMENT["paths"])


def test_every_method_the_router_names_is_documented() -> None:
    for route in a_node_app().router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path != UNKNOWN_ROUTE and route.method != "*":  # "*": the handler decides
            assert route.method in documented_methods(path), (route.method, path)


async def test_every_path_takes_exactly_the_documented_methods(
    client: TestClient[web.Request, web.Application],
) -> None:
    for path in DOCUMENT["paths"]:
        url = path.replace("{key}", "openapi-probe")
        taken = set()
        for method in PROBED:
            async with client.request(method, url, headers=BEARER) as answer:
                if answer.status != 405:
                    taken.add(method)
                    continue
                allowed = {m.strip() for m in answer.headers["Allow"].split(",")}
                assert allowed == documented_methods(path), (path, method)
        assert taken == documented_methods(path), path


def test_only_check_alive_the_document_and_the_dashboard_page_are_public() -> None:
    public = {
        (path, method)
        for path, method, operation in operations()
        if operation.get("security", DOCUMENT["security"]) == []
    }
    # The dashboard's page holds no data; its state is guarded.
    assert {path for path, _ in public} == {"/check-alive", "/openapi.json", "/dashboard"}
    assert DOCUMENT["security"] == [{"bearerAuth": []}]


def test_every_guarded_operation_documents_401_and_every_operation_500() -> None:
    for path, method, operation in operations():
        statuses = set(operation["responses"])
        assert "500" in statuses, (path, method)
        guarded = operation.get("security", DOCUMENT["security"]) != []
        assert ("401" in statuses) == guarded, (path, method)


def test_every_error_answer_is_the_json_error_schema() -> None:
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, operation in operations():
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            content = resolve(response).get("content")
            if method == "head":
                assert content is None, (path, method, status)  # HEAD answers have no body
            else:
                assert content == {"application/json": {"schema": error}}, (path, method, status)


def test_every_error_word_of_the_readme_is_documented_with_its_status() -> None:
    rows = re.findall(r"^\| (\d{3}) \| `(\w+)` \|", README.read_text(), re.MULTILINE)
    assert len(rows) > 10
    described: dict[str, str] = {}
    for _, _, operation in operations():
        for status, response in operation["responses"].items():
            described[status] = described.get(status, "") + resolve(response)["description"]
    for status, word in rows:
        if status == "405":
            described_405 = DOCUMENT["components"]["responses"]["MethodNotAllowed"]["description"]
            assert f"`{word}`" in described_405
        else:
            assert f"`{word}`" in described.get(status, ""), (status, word)


async def test_the_node_serves_the_document_without_auth(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.get("/openapi.json") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/json"
        assert await answer.json() == DOCUMENT
    async with client.head("/openapi.json") as answer:
        assert answer.status == 200


async def test_the_document_takes_only_get_and_head(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.post("/openapi.json") as answer:
        assert answer.status == 405
        assert answer.headers["Allow"] == "GET, HEAD"
        assert (await answer.json())["error"] == "method_not_allowed"
