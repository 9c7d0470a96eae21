"""/openapi.json: the OpenAPI 3.1 description of the service, built from the endpoint table (app.py),
the envelopes (bodies.py) and the project's schema files, read when the application starts.

OpenAPI 3.1's schemas are JSON Schema 2020-12, so the files in `schemas/` go into
`components/schemas` as they are, with two mechanical changes that make them parts of one document:
their `$schema` and `$id` are left out (an `$id` would make each a resource of its own, so that its
`#/$defs/...` references would no longer resolve in this document), and each of their own references
`#/$defs/x` becomes `#/components/schemas/<Name>/$defs/x`. `embedded()` is that change and
`from_embedded()` its inverse, which the tests use to check that what is served is exactly the file.
A change to a schema file is therefore in the description at the next start, with nothing to edit here.
"""
from __future__ import annotations

import json
from importlib import metadata
from typing import Any, Iterable

from .. import schemas
from .bodies import CUSTOMER_VIEW, REQUESTS, RESPONSES, SCHEMA_BASE
from .problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE

OPENAPI_VERSION = "3.1.0"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The project's schemas the bodies use, by their component names.
PROJECT_SCHEMAS: dict[str, str] = {"cart": "Cart", "account": "Account", "trace": "Trace",
                                   CUSTOMER_VIEW: "CustomerTrace"}
PARAMETERS: dict[str, dict[str, Any]] = {
    "order_id": {"type": "string", "minLength": 1, "maxLength": 128},
    "promotion_id": {"type": "string", "minLength": 1, "maxLength": 64},
}


def project_schema(kind: str) -> dict[str, Any]:
    """The schema file `schemas/<kind>.schema.json` as JSON data."""
    if kind in schemas.SCHEMA_KINDS:
        return schemas.schema(kind)
    return json.loads((schemas.SCHEMA_DIR / f"{kind}.schema.json").read_text("utf-8"))


def embedded(kind: str) -> dict[str, Any]:
    name = PROJECT_SCHEMAS[kind]
    doc = {k: v for k, v in project_schema(kind).items() if k not in ("$schema", "$id")}
    return _refs(doc, lambda ref: ref.replace("#/", f"#/components/schemas/{name}/", 1) if ref.startswith("#/") else ref)


def from_embedded(kind: str, component: dict[str, Any]) -> dict[str, Any]:
    """The schema file that `component` (from /openapi.json) was made from."""
    prefix = f"#/components/schemas/{PROJECT_SCHEMAS[kind]}/"
    doc = _refs(component, lambda ref: "#/" + ref[len(prefix):] if ref.startswith(prefix) else ref)
    return {"$schema": DIALECT, "$id": f"{SCHEMA_BASE}{kind}.schema.json", **doc}


def _refs(node: Any, change: Any) -> Any:
    if isinstance(node, dict):
        return {k: (change(v) if k == "$ref" and isinstance(v, str) else _refs(v, change)) for k, v in node.items()}
    if isinstance(node, list):
        return [_refs(v, change) for v in node]
    return node


def _component_ref(ref: str) -> str:
    """An envelope's reference to a project schema (by its `$id`) as a reference inside the document."""
    for kind, name in PROJECT_SCHEMAS.items():
        if ref == f"{SCHEMA_BASE}{kind}.schema.json":
            return f"#/components/schemas/{name}"
    return ref


def _content(name: str) -> dict[str, Any]:
    if name == "metrics":
        return {"text/plain": {"schema": {"type": "string"}}}
    if name == "html":
        return {"text/html": {"schema": {"type": "string"}}}
    if name == "openapi":
        return {"application/json": {"schema": {"type": "object"}}}
    refs = [{"$ref": f"#/components/schemas/{PROJECT_SCHEMAS.get(n, n)}"} for n in name.split("|")]
    return {"application/json": {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}}


def _operation(e: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": e.summary, "operationId": e.method.lower() + e.path.replace("/", "_")
                          .replace("{", "").replace("}", "").replace(".", "_"),
                          "responses": {str(status): {"description": name, "content": _content(name)}
                                        for status, name in e.responses.items()}}
    op["responses"]["default"] = {"description": "a problem (RFC 9457)",
                                  "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    params = [p.strip("{}") for p in e.path.split("/") if p.startswith("{")]
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": PARAMETERS[p]} for p in params]
    if e.request is not None:
        op["requestBody"] = {"required": e.body_required,
                             "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{e.request}"}}}}
    if e.scope is not None:
        op["security"] = [{"apiKey": []}]
        op["x-scope"] = e.scope.value
    return op


def document(endpoints: Iterable[Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e)
    components = {name: embedded(kind) for kind, name in PROJECT_SCHEMAS.items()}
    components.update({name: _refs(schema, _component_ref) for name, schema in {**REQUESTS, **RESPONSES}.items()})
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": DIALECT,
        "info": {"title": "promo-engine", "version": metadata.version("promo-engine"),
                 "description": "Promotions evaluated into a discount trace, and the redemption ledger behind "
                                "checkouts. Keys: `promo keys create`; scopes `checkout` and `admin`."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
    }
