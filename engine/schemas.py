"""JSON Schema checks at the edge: the files in `schemas/`, and their errors in words a marketer can act on.

`check(kind, data)` returns every violation as (path tuple, message); callers attach file, line and
column. Messages are rewritten from jsonschema's where its wording is about JSON rather than about
the rule ("'x' is not of type 'string'" becomes "write money as a quoted decimal, e.g. \"500\"").
"""
from __future__ import annotations

import difflib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SCHEMA_KINDS = ("promotion", "ruleset", "cart", "account", "trace")
# The schemas are the project's top-level `schemas/` directory: one copy, read by the engine, the
# tests and editors alike. promo-engine is installed from its checkout (`pip install -e .`).
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    if kind not in SCHEMA_KINDS:
        raise KeyError(kind)
    return json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text("utf-8"))


@lru_cache(maxsize=None)
def validator(kind: str) -> Draft202012Validator:
    doc = schema(kind)
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc)


def check(kind: str, data: Any) -> list[tuple[tuple, str]]:
    """Every schema violation, deepest first within a path, each once."""
    if quick_valid(kind, data):  # the common case, without jsonschema's cost; the same verdict
        return []
    seen: set[tuple] = set()
    out: list[tuple[tuple, str]] = []
    for error in validator(kind).iter_errors(data):
        path, message = _explain(error)
        if (path, message) not in seen:
            seen.add((path, message))
            out.append((path, message))
    return sorted(out, key=lambda pm: (tuple(str(p) for p in pm[0]), pm[1]))


def _explain(error: ValidationError) -> tuple[tuple, str]:
    path = tuple(error.absolute_path)
    kind, expected, found = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        extras = sorted(set(found) - set(error.schema.get("properties", {})))
        allowed = sorted(error.schema.get("properties", {}))
        msgs = []
        for extra in extras:
            close = difflib.get_close_matches(extra, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed here: {', '.join(allowed)}"
            msgs.append(f"unknown key {extra!r}{hint}")
        return (path + (extras[0],) if extras else path), " / ".join(msgs)
    if kind == "required":
        # jsonschema reports each missing key as its own error: "'status' is a required property".
        match = re.match(r"^'(.+)' is a required property$", error.message)
        return path, f"missing required key {match.group(1)!r}" if match else error.message
    if kind == "enum":
        options = [str(o) for o in expected]
        close = difflib.get_close_matches(str(found), options, n=1)
        what = _what(path)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return path, f"unknown {what} {found!r}{hint} (one of: {', '.join(options)})"
    if kind == "const":
        return path, f"must be {expected!r}, not {found!r}"
    if kind == "type":
        return path, _type_message(expected, found)
    if kind == "pattern":
        return path, _pattern_message(error)
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "above",
                "exclusiveMaximum": "below"}[kind]
        return path, f"{found!r} is out of range: must be {word} {expected}"
    if kind == "minItems":
        return path, f"needs at least {expected} item{'s' if expected != 1 else ''}"
    if kind == "maxItems":
        return path, f"has {len(found)} items; at most {expected} are allowed"
    if kind == "uniqueItems":
        return path, "lists the same item twice"
    if kind == "minProperties":
        return path, "must not be empty"
    if kind == "maxProperties":
        return path, f"give only one of: {', '.join(sorted(error.schema.get('properties', {})))}"
    if kind in ("minLength", "maxLength"):
        return path, f"text length must be {'at least' if kind == 'minLength' else 'at most'} {expected}"
    if kind == "oneOf" and path and isinstance(found, dict) and "at" in found:
        return path, "a tier has exactly one of 'percent' or 'amount'"
    if kind in ("oneOf", "anyOf") and error.schema.get("description"):
        return path, f"{found!r} is not valid: {error.schema['description']}"
    if kind == "not" and isinstance(found, dict) and "value" in found:
        return path + ("value",), f"operator {found.get('operator')!r} takes no value; remove 'value'"
    return path, error.message


def _what(path: tuple) -> str:
    last = path[-1] if path else ""
    return {"name": "variable", "operator": "operator", "type": "reward type"}.get(str(last), "value")


def _type_message(expected: Any, found: Any) -> str:
    wanted = expected if isinstance(expected, list) else [expected]
    if isinstance(found, float):
        if "string" in wanted:
            return f"{found!r} is a bare number; write amounts and decimals as quoted text, e.g. \"{found}\""
        return f"{found!r} must be a whole number"
    if isinstance(found, bool) and "string" in wanted:
        return (f"{str(found).lower()} was read as a yes/no value; if you meant the text (for example the"
                f" country code NO), put it in quotes")
    if isinstance(found, int) and wanted == ["string"]:
        return f"{found!r} must be quoted text, e.g. \"{found}\""
    names = {"string": "text", "integer": "a whole number", "object": "a mapping of keys", "array": "a list",
             "boolean": "true or false", "number": "a number"}
    return f"{found!r} must be {' or '.join(names.get(w, w) for w in wanted)}"


def _pattern_message(error: ValidationError) -> str:
    found = error.instance
    description = error.schema.get("description")
    if description:
        return f"{found!r} is not valid: {description}"
    return f"{found!r} does not have the expected form ({error.validator_value})"


# --- the quick check -----------------------------------------------------------------------------
# evaluate() checks a cart and an account on every call, and jsonschema's general machinery costs
# more than the evaluation of a large cart. `quick_valid` compiles the same schema file into plain
# functions that answer only "certainly valid"; anything else (including a keyword the compiler does
# not know) sends the document through `check()` above, so every error message stays jsonschema's.

class _Unsupported(Exception):
    """The schema uses a keyword the quick check does not implement: always use the full check."""


_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "$defs", "$comment", "default", "examples"})
_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def quick_valid(kind: str, data: Any) -> bool:
    """True only if `data` certainly satisfies the schema `kind`; False means "run `check()`"."""
    test = _quick(kind)
    return test is not None and test(data)


@lru_cache(maxsize=None)
def _quick(kind: str) -> Any:
    root = schema(kind)
    try:
        return _compile(root, root, {}, exact=False)
    except _Unsupported:
        return None


def _compile(node: dict, root: dict, refs: dict, exact: bool) -> Any:  # noqa: C901 - one branch per keyword
    """A function of a document. With `exact`, it must say False only for invalid documents too (it is
    used under `not`, `if` or `oneOf`, where a wrong False would become a wrong True); otherwise
    False may also mean "not sure"."""
    checks: list[Any] = []
    unknown = set(node) - _ANNOTATIONS - {"type", "enum", "const", "pattern", "minLength", "maxLength", "minimum",
                                          "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
                                          "uniqueItems", "required", "properties", "additionalProperties", "items",
                                          "$ref", "minProperties", "maxProperties", "allOf", "anyOf", "oneOf", "not", "if", "then",
                                          "else"}
    if unknown:
        raise _Unsupported(sorted(unknown))
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/$defs/"):
            raise _Unsupported(ref)
        name = ref[len("#/$defs/"):]
        key = (name, exact)
        if key not in refs:
            refs[key] = None  # a recursive reference: compiled once, looked up at call time
            refs[key] = _compile(root["$defs"][name], root, refs, exact)
        checks.append(lambda v, key=key: refs[key](v))
    sub = lambda n, exact_here=exact: _compile(n, root, refs, exact_here)  # noqa: E731
    if "allOf" in node:
        parts = [sub(n) for n in node["allOf"]]
        checks.append(lambda v: all(p(v) for p in parts))
    if "anyOf" in node:
        parts = [sub(n, True) for n in node["anyOf"]]
        checks.append(lambda v: any(p(v) for p in parts))
    if "oneOf" in node:
        parts = [sub(n, True) for n in node["oneOf"]]
        checks.append(lambda v: sum(1 for p in parts if p(v)) == 1)
    if "not" in node:
        negated = sub(node["not"], True)
        checks.append(lambda v: not negated(v))
    if "if" in node:
        condition = sub(node["if"], True)
        then = sub(node["then"]) if "then" in node else (lambda v: True)
        otherwise = sub(node["else"]) if "else" in node else (lambda v: True)
        checks.append(lambda v: then(v) if condition(v) else otherwise(v))
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        tests = [_TYPES[n] for n in names]
        checks.append(lambda v: any(t(v) for t in tests))
    if "enum" in node:
        if not all(isinstance(o, str) for o in node["enum"]):
            raise _Unsupported("enum")
        options = frozenset(node["enum"])
        checks.append(lambda v: isinstance(v, str) and v in options)
    if "const" in node:
        const = node["const"]
        if not isinstance(const, (str, bool)):
            raise _Unsupported("const")
        # Same type as well as equal: JSON's true is not 1, and "x" is not a bool.
        checks.append(lambda v: type(v) is type(const) and v == const)
    if "pattern" in node:
        search = re.compile(node["pattern"]).search
        checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
    for key, holds in (("minLength", lambda n, x: len(n) >= x), ("maxLength", lambda n, x: len(n) <= x)):
        if key in node:
            checks.append(lambda v, x=node[key], holds=holds: not isinstance(v, str) or holds(v, x))
    for key, holds in (("minimum", lambda n, x: n >= x), ("maximum", lambda n, x: n <= x),
                       ("exclusiveMinimum", lambda n, x: n > x), ("exclusiveMaximum", lambda n, x: n < x)):
        if key in node:
            checks.append(lambda v, x=node[key], holds=holds:
                          not _TYPES["number"](v) or holds(v, x))
    for key, holds in (("minItems", lambda n, x: len(n) >= x), ("maxItems", lambda n, x: len(n) <= x)):
        if key in node:
            checks.append(lambda v, x=node[key], holds=holds: not isinstance(v, list) or holds(v, x))
    if node.get("uniqueItems"):
        if exact:
            raise _Unsupported("uniqueItems under not/if/oneOf")
        checks.append(lambda v: not isinstance(v, list) or
                      (all(isinstance(i, str) for i in v) and len(set(v)) == len(v)))
    if "items" in node:
        item = sub(node["items"])
        def each_item(v: Any) -> bool:
            if isinstance(v, list):
                for i in v:
                    if not item(i):
                        return False
            return True
        checks.append(each_item)
    if "minProperties" in node:
        checks.append(lambda v, x=node["minProperties"]: not isinstance(v, dict) or len(v) >= x)
    if "maxProperties" in node:
        checks.append(lambda v, x=node["maxProperties"]: not isinstance(v, dict) or len(v) <= x)
    if "required" in node:
        required = tuple(node["required"])
        checks.append(lambda v: not isinstance(v, dict) or all(k in v for k in required))
    properties = {k: sub(s) for k, s in node.get("properties", {}).items()}
    extra = node.get("additionalProperties", True)
    if extra is not True and extra is not False:
        raise _Unsupported("additionalProperties schema")
    if properties or extra is False:
        def check_properties(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key, value in v.items():
                test = properties.get(key)
                if test is None:
                    if extra is False:
                        return False
                elif not test(value):
                    return False
            return True
        checks.append(check_properties)
    if len(checks) == 1:
        return checks[0]
    checks_tuple = tuple(checks)

    def every(v: Any) -> bool:
        for check in checks_tuple:
            if not check(v):
                return False
        return True
    return every
