"""/openapi.json (engine/service/openapi.py): a valid OpenAPI 3.1 document whose bodies are the
project's schema files, served by the real service."""
from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from engine.service.app import ENDPOINTS
from engine.service.openapi import PROJECT_SCHEMAS, from_embedded, project_schema
from tests.service_support import start


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    srv = start(tmp_path_factory.mktemp("openapi"))
    try:
        response = srv.client(None).get("/openapi.json")
    finally:
        srv.stop()
    assert response.status_code == 200
    return response.json()


def test_the_description_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


@pytest.mark.parametrize("kind", sorted(PROJECT_SCHEMAS))
def test_its_schemas_are_the_files_in_schemas(document, kind):
    component = document["components"]["schemas"][PROJECT_SCHEMAS[kind]]
    assert from_embedded(kind, component) == project_schema(kind)


def test_the_bodies_refer_to_the_project_schemas(document):
    evaluate = document["components"]["schemas"]["EvaluateRequest"]["properties"]
    assert evaluate["cart"] == {"$ref": "#/components/schemas/Cart"}
    assert evaluate["account"] == {"$ref": "#/components/schemas/Account"}
    checkout = document["paths"]["/v1/checkouts"]["post"]["responses"]["201"]["content"]["application/json"]
    assert checkout["schema"] == {"$ref": "#/components/schemas/Checkout"}
    assert document["components"]["schemas"]["Checkout"]["properties"]["trace"] == {"$ref": "#/components/schemas/Trace"}


def test_every_endpoint_is_described_with_its_scope(document):
    for e in ENDPOINTS:
        operation = document["paths"][e.path][e.method.lower()]
        assert operation.get("x-scope") == (e.scope.value if e.scope else None)
        assert "default" in operation["responses"]
