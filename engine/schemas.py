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
