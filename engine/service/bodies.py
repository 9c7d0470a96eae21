"""The service's request and response bodies: their JSON Schemas, and reading a request body.

The envelopes (`{"cart", "account", "codes"?...}`) are the service's own and are written here, once:
the same dicts check the requests and describe them in /openapi.json. What they carry is the project's:
a `$ref` to a schema's `$id` (`https://promo-engine.dev/schemas/cart.schema.json`) names the file in
`schemas/`, which /openapi.json embeds as it is read and which the engine checks with its own messages.
So the envelope check here only sees that a cart is an object; a float price is found by the engine,
with its path (`$.cart.lines[0].unit_price`).

Reading: the size is bounded before a byte is read (a `Content-Length` over the limit is refused at
once) and again while reading (a chunked body stops at the limit); the media type must be JSON; the
JSON is decoded by `engine.inputs.decode_json`, as strictly as a file.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .. import schemas
from ..errors import PromoError
from ..evaluate import MAX_PREVIEW
from ..inputs import MAX_CODE_LENGTH, MAX_CODES, MAX_JSON_BYTES, decode_json
from ..ledger.ledger import MAX_TTL
from ..text import shorten
from ..whynot import STAGES
from .problems import ServiceError

MAX_BODY_BYTES = MAX_JSON_BYTES + 64 * 1024   # a cart and an account at their limit, and the envelope
SCHEMA_BASE = "https://promo-engine.dev/schemas/"
CUSTOMER_VIEW = "customer_trace"              # schemas/customer_trace.schema.json: the customer's view


def project(kind: str) -> dict[str, str]:
    """A reference to one of the project's schema files, by its `$id`."""
    return {"$ref": f"{SCHEMA_BASE}{kind}.schema.json"}


def _text(max_length: int, min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


ID = _text(128)
CODES = {"type": "array", "maxItems": MAX_CODES, "items": _text(MAX_CODE_LENGTH, 0)}
INSTANT = {"type": "string", "maxLength": 40, "description": "ISO 8601 with a UTC offset"}
PREVIEW = {"type": "array", "maxItems": MAX_PREVIEW, "items": _text(64),
           "description": "treat these draft or paused promotions as active"}

# Request bodies, by name.
REQUESTS: dict[str, dict[str, Any]] = {
    "EvaluateRequest": {
        "type": "object", "additionalProperties": False, "required": ["cart", "account"],
        "properties": {
            "cart": project("cart"), "account": project("account"), "codes": CODES,
            "now": dict(INSTANT, description="admin keys only: evaluate at this instant instead of the server's clock"),
            "preview": dict(PREVIEW, description="admin keys only: " + PREVIEW["description"]),
            "view": {"enum": ["merchant", "compact", "customer"], "default": "merchant",
                     "description": "merchant: the full trace; compact: the trace without inputs and with only "
                                    "the not-applied entries of entered codes and hinted near misses; customer: "
                                    "what a checkout page may show the buyer"},
            "customer_id": dict(ID, description="with a ledger: price with this customer's usage, as a checkout "
                                                "would (a used-up promotion is `usage_limit_reached`); without "
                                                "a ledger there is no usage to read and it changes nothing"),
        }},
    "CheckoutRequest": {
        "type": "object", "additionalProperties": False, "required": ["order_id", "customer_id", "cart", "account"],
        "properties": {
            "order_id": ID, "customer_id": ID, "cart": project("cart"), "account": project("account"),
            "codes": CODES,
            "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": int(MAX_TTL.total_seconds()), "default": 900},
        }},
    "CancelRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "returned": {"type": "object", "minProperties": 1, "maxProperties": 1000,
                         "propertyNames": {"maxLength": 128},
                         "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                         "description": "line id -> units returned; omit to cancel what is not yet returned"},
            "return_id": dict(ID, description="the caller's key for this return; needed with `returned`"),
        }},
    "PreviewRequest": {
        "type": "object", "additionalProperties": False, "required": ["cart", "account", "now"],
        "properties": {"cart": project("cart"), "account": project("account"), "codes": CODES, "now": INSTANT,
                       "preview": PREVIEW}},
    "ExplainRequest": {
        "type": "object", "additionalProperties": False, "required": ["cart", "account", "now", "promotion"],
        "properties": {"cart": project("cart"), "account": project("account"), "codes": CODES, "now": INSTANT,
                       "preview": PREVIEW, "promotion": dict(_text(64), description="the promotion's id")}},
    "EmptyRequest": {"type": "object", "additionalProperties": False, "properties": {}},
    "CodeCheckRequest": {
        "type": "object", "additionalProperties": False, "required": ["code"],
        "properties": {"code": _text(MAX_CODE_LENGTH), "customer_id": ID}},
}

_HOLD = {"type": "object", "additionalProperties": False, "required": ["kind", "subject", "uses", "amount"],
         "properties": {"kind": {"type": "string"}, "subject": {"type": "array", "items": {"type": "string"}},
                        "uses": {"type": "integer"}, "amount": {"type": "integer"}}}
_PROMOTION = {
    "type": "object", "additionalProperties": False,
    "required": ["id", "name", "status", "currency", "starts", "ends", "code", "code_pool", "priority", "exclusive"],
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "status": {"type": "string"},
                   "currency": {"type": ["string", "null"]}, "starts": {"type": ["string", "null"]},
                   "ends": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
                   "code_pool": {"type": "boolean"}, "priority": {"type": "integer"}, "exclusive": {"type": "boolean"},
                   "ledger": {"type": "object", "description": "the ledger's counters for it (promo ledger show)"}}}

# Response bodies, by name.
RESPONSES: dict[str, dict[str, Any]] = {
    "Reservation": {
        "type": "object", "additionalProperties": False,
        "required": ["order_id", "customer_id", "state", "ruleset_version", "trace_hash", "created_at", "expires_at",
                     "holds"],
        "properties": {"order_id": {"type": "string"}, "customer_id": {"type": "string"},
                       "state": {"enum": ["held", "committed", "released", "expired", "cancelled"]},
                       "ruleset_version": {"type": "string"}, "trace_hash": {"type": "string"},
                       "created_at": {"type": "string"}, "expires_at": {"type": "string"},
                       "holds": {"type": "array", "items": _HOLD}}},
    "Checkout": {
        "type": "object", "additionalProperties": False, "required": ["reservation", "trace"],
        "properties": {"reservation": {"$ref": "#/components/schemas/Reservation"}, "trace": project("trace")}},
    "Cancellation": {
        "type": "object", "additionalProperties": False,
        "required": ["order_id", "return_id", "cancelled", "returned", "entries"],
        "properties": {"order_id": {"type": "string"}, "return_id": {"type": "string"},
                       "cancelled": {"type": "boolean"},
                       "returned": {"type": "object", "additionalProperties": {"type": "integer"}},
                       "entries": {"type": "array", "items": {
                           "type": "object", "additionalProperties": False, "required": ["kind", "subject", "amount"],
                           "properties": {"kind": {"type": "string"}, "subject": {"type": "string"},
                                          "amount": {"type": "string"}}}}}},
    "CodeCheck": {
        "type": "object", "additionalProperties": False, "required": ["usable", "message"],
        "properties": {"usable": {"type": "boolean"}, "message": {"type": "string"}}},
    "Promotion": _PROMOTION,
    "Promotions": {"type": "object", "additionalProperties": False, "required": ["version", "promotions"],
                   "properties": {"version": {"type": "string"},
                                  "promotions": {"type": "array", "items": {"$ref": "#/components/schemas/Promotion"}}}},
    "Ruleset": {
        "type": "object", "additionalProperties": False,
        "required": ["version", "promotions", "active", "currencies", "loaded_at"],
        "properties": {"version": {"type": "string"}, "promotions": {"type": "integer"}, "active": {"type": "integer"},
                       "currencies": {"type": "array", "items": {"type": "string"}},
                       "loaded_at": {"type": "string"}}},
    "Reload": {
        "type": "object", "additionalProperties": False,
        "required": ["version", "previous_version", "changed", "workers", "generation"],
        "description": "`version` is what every worker serves from this answer on: each request any worker "
                       "starts after it is priced with it",
        "properties": {"version": {"type": "string"}, "previous_version": {"type": "string"},
                       "changed": {"type": "boolean"},
                       "workers": {"type": "integer", "minimum": 1, "description": "worker processes serving it"},
                       "generation": {"type": "integer", "minimum": 0,
                                      "description": "with several workers: how many rule sets were published "
                                                     "to them since the start (1 is the first); 0 with one"}}},
    "Examples": {
        "type": "object", "additionalProperties": False, "required": ["examples"],
        "description": "the example cases of `promo serve --examples DIR`, by name; none without one",
        "properties": {"examples": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["name", "description", "codes", "now", "preview", "cart", "account"],
            "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                           "codes": {"type": "array", "items": {"type": "string"}}, "now": {"type": "string"},
                           "preview": {"type": "array", "items": {"type": "string"}},
                           "cart": project("cart"), "account": project("account")}}}}},
    "Explanation": {
        "type": "object", "additionalProperties": False,
        "required": ["promotion", "name", "applies", "reason", "message", "currency", "measured_on", "steps",
                     "hints", "fixes"],
        "description": "every check evaluate() makes for one promotion, in its order (`promo explain --json`)",
        "properties": {
            "promotion": {"type": "string"}, "name": {"type": "string"}, "applies": {"type": "boolean"},
            "reason": {"type": ["string", "null"], "description": "the trace's reason code; null when it applies"},
            "message": {"type": "string"}, "currency": {"type": "string"}, "measured_on": {"type": "string"},
            "amount": {"type": "string", "description": "what it took off or granted, when it applies"},
            "steps": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["stage", "check", "passed", "reached", "message"],
                "properties": {"stage": {"enum": list(STAGES)}, "check": {"type": "string"},
                               "passed": {"type": "boolean"},
                               "reached": {"type": "boolean",
                                           "description": "false: evaluate() stopped before this step"},
                               "message": {"type": "string"}, "reason": {"type": "string"}, "expected": {},
                               "actual": {}, "shortfall": {"type": "string"}}}},
            "hints": {"type": "array", "items": {"type": "object"}},
            "fixes": {"type": "array", "items": {"type": "string"}, "description": "what would make it apply"}}},
    "Health": {"type": "object", "additionalProperties": False, "required": ["status"],
               "properties": {"status": {"type": "string"}, "checks": {"type": "object",
                                                                       "additionalProperties": {"type": "string"}}}},
    "Problem": {
        "type": "object", "required": ["type", "title", "status", "detail", "reason"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                       "detail": {"type": "string"}, "reason": {"type": "string"},
                       "problems": {"type": "array", "items": {
                           "type": "object", "required": ["path", "message"],
                           "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}},
                       "refusals": {"type": "array", "items": {
                           "type": "object", "required": ["kind", "subject", "reason", "message"],
                           "properties": {"kind": {"type": "string"}, "subject": {"type": "string"},
                                          "reason": {"type": "string"}, "message": {"type": "string"}}}}}},
}

# For checking envelopes, each project schema is only "an object": the engine checks what is inside.
_REGISTRY = Registry().with_resources(
    (f"{SCHEMA_BASE}{kind}.schema.json", Resource({"type": "object"}, specification=DRAFT202012))
    for kind in (*schemas.SCHEMA_KINDS, CUSTOMER_VIEW))
_VALIDATORS = {name: Draft202012Validator(schema, registry=_REGISTRY) for name, schema in REQUESTS.items()}


def check(name: str, doc: Any) -> dict[str, Any]:
    """`doc` if it is a `name` request; otherwise ServiceError listing every problem with its path."""
    errors = sorted(_VALIDATORS[name].iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        problems = tuple({"path": e.json_path, "message": _message(e)} for e in errors)
        first = problems[0]
        raise ServiceError("invalid_request", f"{first['path']}: {first['message']}", problems=problems)
    return doc


def _message(error: Any) -> str:
    schema, value = error.schema, error.instance
    if error.validator == "additionalProperties":
        known = ", ".join(sorted(schema.get("properties", {}))) or "no fields"
        extra = sorted(set(value) - set(schema.get("properties", {})))
        return f"unknown field {shorten(extra[0]) if extra else ''}; this takes {known}"
    if error.validator == "required":
        missing = [k for k in schema["required"] if k not in value]
        return f"missing field {missing[0] if missing else ''}"
    if error.validator == "type":
        return f"must be {'an' if schema['type'] in ('object', 'array', 'integer') else 'a'} {schema['type']}" \
            if isinstance(schema["type"], str) else f"must be one of the types {', '.join(schema['type'])}"
    if error.validator == "enum":
        return "must be one of " + ", ".join(repr(v) for v in schema["enum"])
    if error.validator in ("maxItems", "minItems", "maxLength", "minLength", "maximum", "minimum",
                           "maxProperties", "minProperties"):
        return f"{error.validator} is {error.validator_value}; got {shorten(value)}"
    return shorten(error.message)


def media_type_ok(content_type: str | None) -> bool:
    """application/json, with or without parameters (a charset other than UTF-8 is refused later, when
    the body does not decode)."""
    if content_type is None:
        return False
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or (main.startswith("application/") and main.endswith("+json"))


async def read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes], required: bool = True) -> Any:
    """The request's JSON body, bounded and decoded, or ServiceError. An optional body may be absent
    (no bytes at all): then `{}`."""
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or len(length) > 12:
            raise ServiceError("invalid_request", "Content-Length is not a number of bytes")
        if int(length) > MAX_BODY_BYTES:
            raise _too_large()
    data = bytearray()
    async for chunk in chunks:
        data.extend(chunk)
        if len(data) > MAX_BODY_BYTES:
            raise _too_large()
    if not data and not required:
        return {}
    if not media_type_ok(headers.get("content-type")):
        raise ServiceError("unsupported_media_type", "send the body as JSON with Content-Type: application/json")
    if not data:
        raise ServiceError("malformed_json", "the request body is empty; this endpoint takes a JSON object")
    try:
        return decode_json(bytes(data), "body")
    except PromoError as exc:
        p = exc.problems[0]
        where = f" (line {p.line}, column {p.column})" if p.line else ""
        raise ServiceError("malformed_json", f"{p.message}{where}") from None


def _too_large() -> ServiceError:
    return ServiceError("too_large", f"the body may be at most {MAX_BODY_BYTES} bytes; nothing was read past that")
