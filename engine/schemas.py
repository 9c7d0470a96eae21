"""JSON Schema checks at the edge: the files in `schemas/`, and their errors in words a marketer can act on.

`check(kind, data)` returns every violation as (path tuple, message); callers attach file, line and
column. Messages are rewritten from jsonschema's where its wording is about JSON rather than about
the rule ("'x' is not of type 'string'" becomes "write money as a quoted decimal, e.g. \"500\""), and
echo at most a shortened form of the value (`text.shorten`).

The schema files are read by editors too, with ECMA-262 regular expressions, where `$` is the end of
the text. Our validator (`Validator`) agrees with them and is stricter than plain Draft 2020-12 in four
ways, which the quick check below shares:
- `pattern` must match the whole text (`re.fullmatch`): Python's `re.search` with `^...$` would let
  "alcohol\n" through as "alcohol";
- `"type": "integer"` is a true integer: 2.0 is not one (nor is true);
- every value of `"type": "string"` refuses control characters (C0, DEL, C1, NUL) and lone surrogates
  (`text.forbidden_character`); a node marked `"x-line-breaks": true` (a promotion's description)
  allows newlines and tabs;
- a list over its `maxItems` or a text over its `maxLength` is refused by that keyword alone: its
  items are not checked one by one, nor its text matched (a 100,000-line cart is refused at once).
Before jsonschema sees a document the quick check did not pass, one iterative walk (`_bounds`) refuses
nesting deeper than MAX_DEPTH, numbers of more than MAX_NUMBER_DIGITS digits and any list, text or
mapping larger than every cap in that schema, so that nothing inside jsonschema recurses without end
or formats a huge value.
"""
from __future__ import annotations

import difflib
import json
import math
import numbers
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators as _validators
from jsonschema.exceptions import ValidationError

from .text import FORBIDDEN, MAX_NUMBER_DIGITS, big_number, forbidden_character, shorten

SCHEMA_KINDS = ("promotion", "ruleset", "cart", "account", "trace")
# The schemas are the project's top-level `schemas/` directory: one copy, read by the engine, the
# tests and editors alike. A wheel carries that copy as package data in engine/schema_files/ (setup.py);
# a checkout, or an editable install of it, has no such directory and reads `schemas/` itself.
_PACKAGED = Path(__file__).resolve().parent / "schema_files"
SCHEMA_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent / "schemas"


@lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    if kind not in SCHEMA_KINDS:
        raise KeyError(kind)
    return json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text("utf-8"))


# --- the validator: Draft 2020-12 with whole-text patterns, true integers and clean text -------------

_DRAFT = Draft202012Validator.VALIDATORS


@lru_cache(maxsize=None)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, node: dict) -> Any:
    if not isinstance(instance, str) or len(instance) > node.get("maxLength", math.inf):
        return  # not text, or too long: maxLength says so, and a huge text is not matched
    if _regex(pattern).fullmatch(instance) is None:
        yield ValidationError(f"{shorten(instance)} does not match {pattern!r}")


def _type(validator: Any, types: Any, instance: Any, node: dict) -> Any:
    names = types if isinstance(types, list) else [types]
    if not any(validator.is_type(instance, name) for name in names):
        yield ValidationError(f"{shorten(instance)} is not of type {', '.join(map(repr, names))}")
    elif isinstance(instance, str) and "string" in names:
        problem = forbidden_character(instance, line_breaks=node.get("x-line-breaks") is True)
        if problem is not None:
            yield ValidationError(problem, validator="forbidden_character")


def _over(key: str, size: Any) -> Any:
    """The Draft keyword `key`, skipped for a value over the node's cap `size` (its own error says so)."""
    draft = _DRAFT[key]

    def keyword(validator: Any, value: Any, instance: Any, node: dict) -> Any:
        if isinstance(instance, (list, str, dict)) and len(instance) > node.get(size, math.inf):
            return
        yield from draft(validator, value, instance, node)
    return keyword


def _cap(key: str, word: str) -> Any:
    def keyword(validator: Any, limit: int, instance: Any, node: dict) -> Any:
        kind = {"maxItems": list, "maxLength": str, "maxProperties": dict}[key]
        if isinstance(instance, kind) and len(instance) > limit:
            yield ValidationError(f"has {len(instance)} {word}; at most {limit} are allowed")
    return keyword


Validator = _validators.extend(
    Draft202012Validator,
    validators={"pattern": _pattern, "type": _type,
                "items": _over("items", "maxItems"), "uniqueItems": _over("uniqueItems", "maxItems"),
                "maxItems": _cap("maxItems", "items"), "maxLength": _cap("maxLength", "characters"),
                "maxProperties": _cap("maxProperties", "keys")},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, v: isinstance(v, int) and not isinstance(v, bool)),
)


@lru_cache(maxsize=None)
def validator(kind: str) -> Any:
    doc = schema(kind)
    Draft202012Validator.check_schema(doc)
    return Validator(doc)


def check(kind: str, data: Any) -> list[tuple[tuple, str]]:
    """Every schema violation, deepest first within a path, each once."""
    quick = quick_valid(kind, data)   # the common case, without jsonschema's cost; the same verdict
    if quick and _capped(kind):
        return []
    bounds = _bounds(kind, data)
    if bounds:
        return bounds
    if quick:   # a schema without caps (the trace's) bounds nothing itself: the walk above still ran
        return []
    seen: set[tuple] = set()
    out: list[tuple[tuple, str]] = []
    errors = list(validator(kind).iter_errors(data))
    # A control character in a text is said once, in those words, rather than also as a failed pattern.
    dirty = {tuple(e.absolute_path) for e in errors if e.validator == "forbidden_character"}
    for error in errors:
        if error.validator == "pattern" and tuple(error.absolute_path) in dirty:
            continue
        path, message = _explain(error, kind)
        if (path, message) not in seen:
            seen.add((path, message))
            out.append((path, message))
    return sorted(out, key=lambda pm: (tuple(str(p) for p in pm[0]), pm[1]))


def _capped(kind: str) -> bool:
    """Whether the schema caps every list and text. Then its quick check bounds a document by itself:
    every object is closed, every list and text capped (a test holds the input schemas to that), so
    what it passes is never too deep or too large. A schema without caps (the trace's: its `inputs`
    are plain objects, checked by evaluate() later) lets the bounds walk run after the quick check."""
    return math.inf not in _caps(kind)


MAX_DEPTH = 32          # levels of nesting in a JSON document; the deepest valid one has about 20
MAX_NODES = 1_000_000   # values in one document; a full 1,000-line cart has about 15,000


@lru_cache(maxsize=None)
def _caps(kind: str) -> tuple[float, float]:
    """The largest maxItems and maxLength anywhere in the schema: a longer list or text is invalid
    wherever it is. A schema with a list or text without its cap (the trace's) has no such bound."""
    items, length = 0.0, 64.0
    stack: list[Any] = [schema(kind)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
            if "array" in types:
                items = max(items, node.get("maxItems", math.inf))
            if "string" in types and "enum" not in node and "const" not in node:
                length = max(length, node.get("maxLength", math.inf))
            # an `if` node is a test, not a field: it needs no cap of its own
            stack.extend(v for k, v in node.items() if k not in ("enum", "const", "examples", "default", "if"))
        elif isinstance(node, list):
            stack.extend(node)
    return items, length


def _node_at(kind: str, path: tuple) -> dict:
    """The schema node for `path`, followed through properties, items and $ref only ({} if elsewhere)."""
    root = schema(kind)
    node: Any = root
    for part in path + (None,):
        while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/$defs/"):
            node = root["$defs"][node["$ref"][len("#/$defs/"):]]
        if part is None or not isinstance(node, dict):
            break
        node = node.get("items") if isinstance(part, int) else node.get("properties", {}).get(part)
    return node if isinstance(node, dict) else {}


def _bounds(kind: str, data: Any) -> list[tuple[tuple, str]]:
    """One iterative walk, before jsonschema sees `data`: nesting, huge numbers, oversized lists and
    texts. The first problem found, or []."""
    max_items, max_length = _caps(kind)
    stack: list[tuple[Any, tuple, int]] = [(data, (), 0)]
    nodes = 0
    while stack:
        value, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return [((), f"has more than {MAX_NODES:,} values; far more than any {kind} holds")]
        if isinstance(value, str):
            if len(value) > max_length:
                limit = _node_at(kind, path).get("maxLength", max_length)
                return [(path, f"text length must be at most {limit}; got {len(value)} characters")]
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                return [(path, f"nested deeper than {MAX_DEPTH} levels")]
            if isinstance(value, list):
                if len(value) > max_items:
                    limit = _node_at(kind, path).get("maxItems", max_items)
                    return [(path, f"has {len(value)} items; at most {limit} are allowed")]
                stack.extend((item, path + (i,), depth + 1) for i, item in enumerate(value))
            else:
                for key, item in value.items():
                    if isinstance(key, str) and len(key) > max_length:
                        return [(path, f"has a key of {len(key)} characters: {shorten(key)}")]
                    stack.append((item, path + (key,), depth + 1))
        elif big_number(value):
            return [(path, f"{shorten(value)}: a number of more than {MAX_NUMBER_DIGITS} digits is never valid")]
    return []


# Words a marketer writes as a condition's variable that are really what `targets` selects.
TARGET_WORDS = {"category": "targets.include.categories", "categories": "targets.include.categories",
                "sku": "targets.include.skus", "skus": "targets.include.skus", "brand": "targets.include.brands",
                "brands": "targets.include.brands", "seller": "targets.exclude.sellers",
                "sellers": "targets.exclude.sellers", "product_type": "targets.exclude.product_types",
                "product_types": "targets.exclude.product_types"}


def _moved(document: str, path: tuple, key: Any) -> str | None:
    """Where an unknown key belongs when it is a key one level deeper (a key of one of this mapping's
    mappings: `exclusive` at the top belongs under `stacking`) or one level up (`limits` inside
    `stacking` belongs beside it)."""
    if not isinstance(key, str) or not document:
        return None
    here = _node_at(document, path)
    for name in sorted(here.get("properties", {})):
        if key in _node_at(document, path + (name,)).get("properties", {}):
            return f"`{key}` belongs under `{name}` (indented beneath `{name}:`)"
    if path and key in _node_at(document, path[:-1]).get("properties", {}):
        where = "at the top level of the file" if len(path) == 1 else f"under `{path[-2]}`"
        return f"`{key}` belongs {where}, beside `{path[-1]}`, not inside it"
    return None


def _explain(error: ValidationError, document: str = "") -> tuple[tuple, str]:
    path = tuple(error.absolute_path)
    kind, expected, found = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extras = sorted((k for k in found if k not in allowed), key=lambda k: (type(k).__name__, str(k)))[:5]
        msgs = []
        for extra in extras:   # keys of a mapping handed over in memory may be anything, not only text
            moved = _moved(document, path, extra)
            if moved is not None:
                msgs.append(f"unknown key {shorten(extra)} here: {moved}")
                continue
            close = difflib.get_close_matches(extra, allowed, n=1) if isinstance(extra, str) and len(extra) < 100 else []
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed here: {', '.join(allowed)}"
            msgs.append(f"unknown key {shorten(extra)}{hint}")
        return (path + (extras[0],) if extras else path), " / ".join(msgs)
    if kind == "required":
        # jsonschema reports each missing key as its own error: "'status' is a required property".
        match = re.match(r"^'(.+)' is a required property$", error.message)
        return path, f"missing required key {match.group(1)!r}" if match else error.message
    if kind == "enum":
        options = [str(o) for o in expected]
        what = _what(path)
        if what == "variable" and isinstance(found, str) and found.lower() in TARGET_WORDS:
            return path, (f"unknown variable {shorten(found)}: which lines a promotion discounts is not a condition; "
                          f"list them under `{TARGET_WORDS[found.lower()]}` instead")
        close = difflib.get_close_matches(found, options, n=1) if isinstance(found, str) and len(found) < 100 else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return path, f"unknown {what} {shorten(found)}{hint} (one of: {', '.join(options)})"
    if kind == "const":
        return path, f"must be {expected!r}, not {shorten(found)}"
    if kind == "type":
        return path, _type_message(expected, found)
    if kind == "pattern":
        return path, _pattern_message(error)
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "above",
                "exclusiveMaximum": "below"}[kind]
        return path, f"{shorten(found)} is out of range: must be {word} {expected}"
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
    if kind == "forbidden_character":
        return path, error.message
    if kind in ("minLength", "maxLength"):
        return path, f"text length must be {'at least' if kind == 'minLength' else 'at most'} {expected}"
    if kind == "oneOf" and path and isinstance(found, dict) and "at" in found:
        return path, "a tier has exactly one of 'percent' or 'amount'"
    if kind in ("oneOf", "anyOf") and error.schema.get("description"):
        return path, f"{shorten(found)} is not valid: {error.schema['description']}"
    if kind == "not" and isinstance(found, dict) and "value" in found:
        return path + ("value",), f"operator {found.get('operator')!r} takes no value; remove 'value'"
    if kind == "not" and isinstance(found, dict) and isinstance(expected, dict) and list(expected) == ["required"]:
        keys = [str(k) for k in expected["required"]]
        if len(keys) > 1:
            return path, f"give only one of: {', '.join(keys)}"
        return path, f"must not have key {keys[0]!r} here{_view_note(found)}"
    return path, error.message


def _view_note(found: dict) -> str:
    """Why a trace may not hold a key: the compact view and the full trace each keep what the other omits."""
    if "format" not in found or "ruleset_version" not in found:
        return ""
    return " (a compact trace, `view: compact`, has no inputs; a full trace has no not_applied_omitted)"


def _what(path: tuple) -> str:
    last = path[-1] if path else ""
    return {"name": "variable", "operator": "operator", "type": "reward type"}.get(str(last), "value")


def _type_message(expected: Any, found: Any) -> str:
    wanted = expected if isinstance(expected, list) else [expected]
    names = {"string": "text", "integer": "a whole number", "object": "a mapping of keys", "array": "a list",
             "boolean": "true or false", "number": "a number"}
    if found is None:        # `key:` with nothing after it
        return f"is empty: give it {' or '.join(names.get(w, w) for w in wanted)}"
    if isinstance(found, float):
        if "string" in wanted:
            return f"{shorten(found)} is a bare number; write amounts and decimals as quoted text, e.g. \"{found}\""
        return f"{shorten(found)} must be a whole number"
    if isinstance(found, bool) and "string" in wanted:
        return (f"{str(found).lower()} was read as a yes/no value; if you meant the text (for example the"
                f" country code NO), put it in quotes")
    if isinstance(found, int) and wanted == ["string"]:
        return f"{shorten(found)} must be quoted text, e.g. \"{found}\""
    return f"{shorten(found)} must be {' or '.join(names.get(w, w) for w in wanted)}"


def _pattern_message(error: ValidationError) -> str:
    found = error.instance
    description = error.schema.get("description")
    if description:
        return f"{shorten(found)} is not valid: {description}"
    return f"{shorten(found)} does not have the expected form ({error.validator_value})"


# --- the quick check -----------------------------------------------------------------------------
# evaluate() checks a cart and an account on every call, and jsonschema's general machinery costs
# more than the evaluation of a large cart. `quick_valid` compiles the same schema file into plain
# functions that answer only "certainly valid"; anything else (including a keyword the compiler does
# not know) sends the document through `check()` above, so every error message stays jsonschema's.
#
# What costs time in such functions is calling them, more than the tests inside. So the compiler
# turns each schema node into as few closures as it can:
# - a node of a common shape becomes one closure that tests the value's type once: a string with
#   a length and a pattern (`_string`), an enum of strings (`_enum`), a bounded integer
#   (`_integer`), an array (`_array`), an object whose keys are looked up in one loop (`_object`);
# - a `$ref` is the closure of the node it names, not a wrapper around it;
# - several checks on one node are joined by `_all`, which returns a single check unwrapped.
# Any other combination of keywords is compiled keyword by keyword (`_per_keyword`).
# tests/test_schemas.py holds every shape to jsonschema's verdict.

class _Unsupported(Exception):
    """The schema uses a keyword the quick check does not implement: always use the full check."""


_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "markdownDescription", "$defs", "$comment",
                          "default", "examples", "x-line-breaks"})
# Keywords that apply subschemas to the value itself; each becomes one check beside the node's own.
_APPLICATORS = frozenset({"$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else"})
# Keywords that constrain only values of one JSON type: a value of another type passes them.
_STRING_KEYWORDS = frozenset({"pattern", "minLength", "maxLength"})
_NUMBER_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_ARRAY_KEYWORDS = frozenset({"items", "minItems", "maxItems", "uniqueItems"})
_OBJECT_KEYWORDS = frozenset({"properties", "additionalProperties", "required", "minProperties", "maxProperties"})
_ASSERTIONS = frozenset({"type", "enum", "const"}) | _STRING_KEYWORDS | _NUMBER_KEYWORDS | _ARRAY_KEYWORDS \
    | _OBJECT_KEYWORDS


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


_clean = FORBIDDEN.search   # text.forbidden_character's test, the same compiled pattern
_clean_breaks = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]").search


# JSON types as `Validator` defines them: an integer is a true int (not 2.0, not true), and a string
# holds no control character or lone surrogate.
_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str) and (v.isprintable() or _clean(v) is None),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
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


def _compile(node: dict, root: dict, refs: dict, exact: bool) -> Any:
    """A function of a document. With `exact`, it must say False only for invalid documents too (it is
    used under `not`, `if` or `oneOf`, where a wrong False would become a wrong True); otherwise
    False may also mean "not sure"."""
    unknown = set(node) - _ANNOTATIONS - _APPLICATORS - _ASSERTIONS
    if unknown:
        raise _Unsupported(sorted(unknown))
    sub = lambda n, exact_here=exact: _compile(n, root, refs, exact_here)  # noqa: E731
    checks = _applicators(node, root, refs, exact, sub)
    own = {key: value for key, value in node.items() if key in _ASSERTIONS}
    if own:
        if node.get("x-line-breaks") is True:
            if own.get("type") != "string" or set(own) - {"type", "maxLength", "minLength"}:
                raise _Unsupported("x-line-breaks")
            low, high = own.get("minLength", 0), own.get("maxLength", math.inf)
            checks.append(lambda v: isinstance(v, str) and low <= len(v) <= high and _clean_breaks(v) is None)
        else:
            checks.append(_assertions(own, sub, exact))
    return _all(checks)


def _all(checks: list) -> Any:
    """One function that holds when every check holds; no wrapper around a single check."""
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    checks_tuple = tuple(checks)

    def every(v: Any) -> bool:
        for check in checks_tuple:
            if not check(v):
                return False
        return True
    return every


def _ref(ref: str, root: dict, refs: dict, exact: bool) -> Any:
    """The check of the node `ref` names, compiled once per (name, exact)."""
    if not ref.startswith("#/$defs/"):
        raise _Unsupported(ref)
    key = (ref[len("#/$defs/"):], exact)
    if key not in refs:
        refs[key] = None  # being compiled: a reference to it from inside itself finds None
        refs[key] = _compile(root["$defs"][key[0]], root, refs, exact)
    if refs[key] is None:  # a recursive reference: look the check up at call time, once it exists
        return lambda v: refs[key](v)
    return refs[key]


def _applicators(node: dict, root: dict, refs: dict, exact: bool, sub: Any) -> list:
    checks: list[Any] = []
    if "$ref" in node:
        checks.append(_ref(node["$ref"], root, refs, exact))
    if "allOf" in node:
        checks.append(_all_of(node["allOf"], sub))
    if "anyOf" in node:
        any_parts = tuple(sub(n, True) for n in node["anyOf"])

        def any_of(v: Any) -> bool:
            for part in any_parts:
                if part(v):
                    return True
            return False
        checks.append(any_of)
    if "oneOf" in node:
        one_parts = tuple(sub(n, True) for n in node["oneOf"])

        def one_of(v: Any) -> bool:
            found = False
            for part in one_parts:
                if part(v):
                    if found:
                        return False
                    found = True
            return found
        checks.append(one_of)
    if "not" in node:
        negated = sub(node["not"], True)
        checks.append(lambda v: not negated(v))
    if "if" in node:
        condition = sub(node["if"], True)
        then = sub(node["then"]) if "then" in node else (lambda v: True)
        otherwise = sub(node["else"]) if "else" in node else (lambda v: True)
        checks.append(lambda v: then(v) if condition(v) else otherwise(v))
    return checks


def _all_of(parts: list, sub: Any) -> Any:
    """`allOf`. Its parts of the form "if <key> is one of these texts, then ..." on one key (a tagged union:
    the leaf's rules per variable, the benefit's per type) become one look-up of the key's value, instead
    of a test of every part's `if` on every value; the other parts are checked as they are."""
    keyed: dict[str, list[tuple[tuple[str, ...], dict]]] = {}
    for part in parts:
        tagged = _tagged(part)
        if tagged is not None:
            keyed.setdefault(tagged[0], []).append((tagged[1], part["then"]))
    key = max(keyed, key=lambda k: len(keyed[k]), default=None)
    if key is None or len(keyed[key]) < 2:
        return _all([sub(n) for n in parts])
    branches = [(options, sub(then)) for options, then in keyed[key]]
    others = _all([sub(n) for n in parts if (_tagged(n) or (None,))[0] != key])
    by_value: dict[str, list] = {}
    for options, then in branches:
        for option in dict.fromkeys(options):
            by_value.setdefault(option, []).append(then)
    thens_of = {option: _all(thens) for option, thens in by_value.items()}.get
    every_then = _all([then for _, then in branches])

    def tagged_union(v: Any) -> bool:
        if not isinstance(v, dict):   # `required` and `properties` hold for a value that is not an object
            return every_then(v) and others(v)
        tag = v.get(key)
        # a part's `if` holds only when the key is there and its value is one of the part's texts
        then = thens_of(tag) if isinstance(tag, str) else None
        return (then is None or then(v)) and others(v)
    return tagged_union


def _tagged(part: Any) -> tuple[str, tuple[str, ...]] | None:
    """(key, texts) for a part `{"if": {"required": [key], "properties": {key: {"enum": texts}}}, "then": ...}`
    (or `"const": text`), with no `else` and nothing else that checks; None for any other part."""
    if not isinstance(part, dict) or set(part) - _ANNOTATIONS != {"if", "then"} or not isinstance(part["if"], dict):
        return None
    condition = part["if"]
    required, properties = condition.get("required"), condition.get("properties")
    if set(condition) - _ANNOTATIONS != {"required", "properties"} or not isinstance(required, list) or \
            len(required) != 1 or not isinstance(properties, dict) or list(properties) != required:
        return None
    test = properties[required[0]]
    if not isinstance(test, dict) or len(set(test) - _ANNOTATIONS) != 1:
        return None
    if "enum" in test and isinstance(test["enum"], list) and all(isinstance(o, str) for o in test["enum"]):
        return required[0], tuple(test["enum"])
    if "const" in test and isinstance(test["const"], str):
        return required[0], (test["const"],)
    return None


def _assertions(node: dict, sub: Any, exact: bool) -> Any:
    """One check for a node's own keywords (`node` holds only those): a fused one for a common shape."""
    kind = node.get("type")
    keys = set(node) - {"type"}
    if keys == {"enum"} and kind in (None, "string"):
        return _enum(node["enum"])
    if kind == "string" and keys <= _STRING_KEYWORDS:
        return _string(node, typed=True)
    if kind == "integer" and keys <= {"minimum", "maximum"}:
        return _integer(node, _all(_per_keyword(node, sub, exact)))
    if kind == "array" and keys <= _ARRAY_KEYWORDS:
        return _array(node, sub, exact, typed=True)
    if kind in ("object", None) and keys <= _OBJECT_KEYWORDS:
        return _object(node, sub, typed=kind == "object")
    return _all(_per_keyword(node, sub, exact))


def _per_keyword(node: dict, sub: Any, exact: bool) -> list:
    """The general case: type, enum and const, then each type's own keywords; all must hold."""
    checks: list[Any] = []
    keys = set(node)
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        tests = tuple(_TYPES[n] for n in names)
        checks.append(tests[0] if len(tests) == 1 else lambda v: any(t(v) for t in tests))
    if "enum" in node:
        checks.append(_enum(node["enum"]))
    if "const" in node:
        checks.append(_const(node["const"]))
    if keys & _STRING_KEYWORDS:
        checks.append(_string(node, typed=False))
    if keys & _NUMBER_KEYWORDS:
        checks.append(_number(node))
    if keys & _ARRAY_KEYWORDS:
        checks.append(_array(node, sub, exact, typed=False))
    if keys & _OBJECT_KEYWORDS:
        checks.append(_object(node, sub, typed=False))
    return checks


def _enum(options: list) -> Any:
    if not all(isinstance(o, str) for o in options):
        raise _Unsupported("enum")
    # jsonschema compares a string with ==, and nothing but a string equals one.
    option_set = frozenset(options)
    return lambda v: isinstance(v, str) and v in option_set


def _const(const: Any) -> Any:
    if isinstance(const, bool):  # JSON's true is not 1
        return lambda v: v is const
    if isinstance(const, str):
        return lambda v: isinstance(v, str) and v == const
    if const is None:
        return lambda v: v is None
    if isinstance(const, (int, float)):
        # jsonschema's equality: a number equals the const when == says so (1.0 is 1), but a boolean
        # never equals a number (true is not 1)
        return lambda v: v is not True and v is not False and _is_number(v) and v == const
    raise _Unsupported("const")


# The keywords of each type, fused. With `typed`, the node also says `"type": <that type>`, so a value of
# another type fails; without, it passes (a keyword about strings says nothing about a number).

def _string(node: dict, typed: bool) -> Any:
    low, high = node.get("minLength", 0), node.get("maxLength", math.inf)
    if "pattern" not in node:
        if typed:
            # isprintable() (fast, C) holds for nearly every text and implies no forbidden character
            return lambda v: isinstance(v, str) and low <= len(v) <= high and (v.isprintable() or _clean(v) is None)
        return lambda v: not isinstance(v, str) or low <= len(v) <= high
    match = _regex(node["pattern"]).fullmatch   # the whole text, as Validator's `pattern`

    if typed:
        def typed_string(v: Any) -> bool:
            return isinstance(v, str) and low <= len(v) <= high and match(v) is not None and \
                (v.isprintable() or _clean(v) is None)
        return typed_string

    def string(v: Any) -> bool:
        return not isinstance(v, str) or (low <= len(v) <= high and match(v) is not None)
    return string


def _integer(node: dict, general: Any) -> Any:
    """`"type": "integer"` with minimum and/or maximum. A plain int (the common case; a bool is not one)
    is compared at once; anything else (2.0, true, "3") goes through the general checks."""
    low, high = node.get("minimum", -math.inf), node.get("maximum", math.inf)

    def integer(v: Any) -> bool:
        if type(v) is int:
            return low <= v <= high
        return general(v)
    return integer


def _number(node: dict) -> Any:
    # Each bound fails exactly when jsonschema's does (`v < minimum` and so on), NaN included.
    tests = []
    if "minimum" in node:
        tests.append(lambda v, x=node["minimum"]: not v < x)
    if "maximum" in node:
        tests.append(lambda v, x=node["maximum"]: not v > x)
    if "exclusiveMinimum" in node:
        tests.append(lambda v, x=node["exclusiveMinimum"]: not v <= x)
    if "exclusiveMaximum" in node:
        tests.append(lambda v, x=node["exclusiveMaximum"]: not v >= x)
    return lambda v: not _is_number(v) or all(t(v) for t in tests)


def _array(node: dict, sub: Any, exact: bool, typed: bool) -> Any:
    item = sub(node["items"]) if "items" in node else None
    low, high = node.get("minItems", 0), node.get("maxItems", math.inf)
    unique = bool(node.get("uniqueItems"))
    if unique and exact:
        raise _Unsupported("uniqueItems under not/if/oneOf")

    def array(v: Any) -> bool:
        if not isinstance(v, list):
            return not typed
        if not low <= len(v) <= high:
            return False
        if item is not None:
            for i in v:
                if not item(i):
                    return False
        # Repeats are found with a set for lists of strings only; other lists are "not sure".
        return not unique or (all(isinstance(i, str) for i in v) and len(set(v)) == len(v))
    return array


def _object(node: dict, sub: Any, typed: bool) -> Any:
    properties = {key: sub(s) for key, s in node.get("properties", {}).items()}
    extra = node.get("additionalProperties", True)
    if extra is not True and extra is not False and not isinstance(extra, dict):
        raise _Unsupported("additionalProperties")
    required = frozenset(node.get("required", ()))
    low, high = node.get("minProperties", 0), node.get("maxProperties", math.inf)

    if not properties and extra is True and low == 0 and high == math.inf:
        # only a type and/or required keys: the condition tree's "is it an all, an any, a leaf?"
        if typed:
            return lambda v: isinstance(v, dict) and v.keys() >= required
        return lambda v: not isinstance(v, dict) or v.keys() >= required

    if extra is False:
        # Closed: every key of the value must be a known property, so walk the value's keys.
        check_of = properties.get  # bound once: this loop runs for every line of every cart

        def closed_object(v: Any) -> bool:
            if not isinstance(v, dict):
                return not typed
            if not low <= len(v) <= high:
                return False
            for key, value in v.items():
                test = check_of(key)
                if test is None or not test(value):
                    return False
            return v.keys() >= required
        return closed_object

    if extra is not True:
        # Every other key's value must pass the additionalProperties schema: walk the value's keys too.
        other = sub(extra)
        check_or_other = properties.get

        def object_with_others(v: Any) -> bool:
            if not isinstance(v, dict):
                return not typed
            if not low <= len(v) <= high:
                return False
            for key, value in v.items():
                if not check_or_other(key, other)(value):
                    return False
            return v.keys() >= required
        return object_with_others

    # Open: other keys are allowed, so walk the properties the schema names.
    property_items = tuple(properties.items())

    def open_object(v: Any) -> bool:
        if not isinstance(v, dict):
            return not typed
        if not low <= len(v) <= high:
            return False
        for key, test in property_items:
            if key in v and not test(v[key]):
                return False
        return v.keys() >= required
    return open_object
