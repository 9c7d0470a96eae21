"""Trusting a trace only as far as it can be re-derived.

A trace handed back to promo-engine (to reserve an order in the ledger, to price a return, to cancel)
may have been edited on the way: a line price raised, an applied amount lowered, an entry removed or
listed twice, the currency switched. Nothing downstream of `evaluate()` believes its numbers: the
trace carries its checked `inputs`, so `verified(ruleset, doc)` evaluates those inputs again with the
rule set the trace names and compares the result with the trace, field by field. Any difference is a
`TraceMismatch` naming the first field that differs; otherwise the re-derived `Trace` is returned and
is what the caller works from. The cost is one `evaluate()` per call.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from . import schemas
from .errors import InputError, Problem, PromoError
from .evaluate import evaluate
from .model import RuleSet
from .text import shorten
from .trace import Trace
from .yamlsafe import json_path


class TraceMismatch(InputError):
    """The trace is not what its own inputs evaluate to: it was edited, truncated or forged.
    `field` is the JSON path of the first field that differs."""

    def __init__(self, field: str, detail: str):
        self.field = field
        super().__init__([Problem("trace", 0, 0, field, detail)], "trace")


def trace_document(trace: Trace | Mapping[str, Any]) -> dict:
    """The trace as checked JSON data: a `Trace` is serialised, a mapping must pass the trace schema."""
    if isinstance(trace, Trace):
        return json.loads(trace.to_json(indent=None))
    if not isinstance(trace, Mapping):
        raise InputError([Problem("trace", 0, 0, "$", f"a trace is a JSON object; got {type(trace).__name__}")],
                         "trace")
    problems = [Problem("trace", 0, 0, json_path(where), message) for where, message in schemas.check("trace", trace)]
    if problems:
        raise InputError(problems, "trace")
    if "view" in trace:
        raise InputError([Problem("trace", 0, 0, "$.view", "a compact trace leaves out its inputs and most not-applied "
                                                            "entries, so it cannot be checked: send the full trace")],
                         "trace")
    return json.loads(json.dumps(trace))


def verified(ruleset: RuleSet, trace: Trace | Mapping[str, Any]) -> Trace:
    """The trace re-derived from its own inputs with `ruleset`, after checking that it equals what was
    given. Raises InputError for a trace that is not one or names another rule set, TraceMismatch for
    one whose numbers its inputs do not give."""
    return rederived(ruleset, trace_document(trace))


def rederived(ruleset: RuleSet, doc: dict) -> Trace:
    """`verified` for a document `trace_document` has already checked."""
    return rederived_with_document(ruleset, doc)[0]


def rederived_with_document(ruleset: RuleSet, doc: dict) -> tuple[Trace, dict]:
    """`rederived`, and the re-derived trace as JSON data (equal to `doc`), which the comparison had to
    build anyway: a caller that stores or hashes the trace uses it rather than serialising it again."""
    if doc["ruleset_version"] != ruleset.version:
        raise InputError([Problem("trace", 0, 0, "$.ruleset_version",
                                  f"the order was priced with rule set {shorten(doc['ruleset_version'])}, not with "
                                  f"these rules ({ruleset.version})")], "trace")
    inputs = doc["inputs"]
    try:
        again = evaluate(ruleset, inputs["cart"], inputs["account"], codes=inputs["codes"], now=doc["now"],
                         usage=inputs["usage"], preview=inputs["preview"])
    except PromoError as exc:   # the inputs themselves were edited into something evaluate() refuses
        first = exc.problems[0] if exc.problems else None
        where = "$.inputs" + (first.path[1:] if first and first.path.startswith("$") else "")
        raise TraceMismatch(where, f"the trace's inputs do not evaluate: {first.message if first else exc}") from None
    again_doc = json.loads(again.to_json(indent=None))
    field = first_difference(again_doc, doc)
    if field is not None:
        raise TraceMismatch(field, "the trace differs from what its inputs evaluate to: it was edited or "
                                   "forged; evaluate the order again")
    return again, again_doc


def first_difference(expected: Any, given: Any, path: str = "$") -> str | None:
    """The JSON path of the first place where `given` differs from `expected` (keys in sorted order,
    list items by position), or None when they are equal. Types matter: "1" is not 1, 1 is not True."""
    if type(expected) is not type(given):
        return path
    if isinstance(expected, dict):
        for key in sorted(set(expected) | set(given)):
            if key not in expected or key not in given:
                return f"{path}.{key}"
            found = first_difference(expected[key], given[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(expected, list):
        for i, (a, b) in enumerate(zip(expected, given)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        return None if len(expected) == len(given) else f"{path}[{min(len(expected), len(given))}]"
    return None if expected == given else path
