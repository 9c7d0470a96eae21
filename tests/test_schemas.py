"""The schema's vocabulary is the code's: variable names, their types and operators must match what
business-rules exports for PromotionVariables, minus the operators we refuse to offer."""
from business_rules.actions import BaseActions
from business_rules.utils import export_rule_data

from engine import schemas
from engine.conditions import OPERATORS
from engine.variables import FORBIDDEN_OPERATORS, MONEY_VARIABLES, PromotionVariables


def exported():
    return export_rule_data(PromotionVariables, BaseActions)


def test_schema_variables_equal_the_exported_variables():
    defs = schemas.schema("promotion")["$defs"]
    assert set(defs["variables"]["enum"]) == {v["name"] for v in exported()["variables"]}


def test_schema_operators_per_type_equal_the_exported_operators_without_forbidden_ones():
    defs = schemas.schema("promotion")["$defs"]
    used_types = {v["field_type"] for v in exported()["variables"]}
    for field_type in used_types:
        exported_ops = {o["name"] for o in exported()["variable_type_operators"][field_type]} - FORBIDDEN_OPERATORS
        assert set(defs[f"{field_type}_operators"]["enum"]) == exported_ops, field_type
        assert all((field_type, op) in OPERATORS for op in exported_ops)


def test_each_variable_is_typed_in_the_schema_as_in_the_code():
    leaf_rules = schemas.schema("promotion")["$defs"]["leaf"]["allOf"]
    by_type = {}
    for rule in leaf_rules:
        names = rule.get("if", {}).get("properties", {}).get("name", {}).get("enum")
        op_ref = rule.get("then", {}).get("properties", {}).get("operator", {}).get("$ref")
        if names and op_ref:
            for name in names:
                by_type[name] = op_ref.rsplit("/", 1)[1].removesuffix("_operators")
    assert by_type == {v["name"]: v["field_type"] for v in exported()["variables"]}


def test_regex_is_never_offered():
    text = str(schemas.schema("promotion"))
    assert "matches_regex" not in text


def test_money_variables_take_decimal_strings():
    leaf_rules = schemas.schema("promotion")["$defs"]["leaf"]["allOf"]
    money_rule = next(r for r in leaf_rules if set(r["if"]["properties"].get("name", {}).get("enum", [])) == MONEY_VARIABLES)
    assert money_rule["then"]["properties"]["value"]["$ref"] == "#/$defs/money"   # beside its description


def test_every_shipped_schema_is_a_valid_2020_12_schema():
    for kind in schemas.SCHEMA_KINDS:
        schemas.validator(kind)  # check_schema raises on an invalid schema
        assert schemas.schema(kind)["$schema"].endswith("2020-12/schema")


# The quick check must never call a document valid that jsonschema refuses, and must accept the
# ordinary valid documents (otherwise it saves nothing).
import copy  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402
from hypothesis import given, settings as hsettings, strategies as hst  # noqa: E402

from engine.schemas import Validator, quick_valid, validator as _validator  # noqa: E402

_ODD = hst.sampled_from([None, True, False, 0, 1, -1, 1.5, 2.0, 10_000, "", "x", "JP", "jp", "2", "12.50", "0",
                         "-1", "1e3", "web", "tv", "first_party", "physical", "Asia/Tokyo", "a" * 70, [], ["x"],
                         ["vip", "vip"], {}, {"method": "std", "price": "5"},
                         # edges of the fused checks: a pattern's `$` before a final newline, lengths at
                         # their bounds, non-ASCII digits, a too-fine price, NaN, bounds of integers
                         "12.50\n", "JP\n", "vip\n", "\n", "a" * 64, "a" * 65, "٣", "0.0000001", "0.000001",
                         float("nan"), 9999, 9999.0, 10**12, 10**12 + 1, 0.0, -0.0, "as_needed", "as needed",
                         ["vip", "gold"], ["third_party", "third_party"], [1, 1], [{"a": 1}]]
                        ).map(copy.deepcopy)   # a fresh copy each draw: mutations must not change the pool
# Text a pattern's `$` or a loose check might let through: ordinary values with a control character, a
# line break, a lone surrogate or an invisible character before, inside or after them.
_EDGE_TEXT = hst.builds(
    lambda base, odd, where: base[:where] + odd + base[where:] if where >= 0 else base + odd,
    hst.sampled_from(["books", "GIFT-1", "acme", "vip", "banned", "JP", "JPY", "1500", "12.50", "L1", "prime",
                      "Asia/Tokyo", "standard", "2026-11-01T00:00:00+09:00", "lot-1", "SAVE", "a"]),
    hst.sampled_from(["\n", "\r\n", "\r", "\x00", "\t", "\x1b[31m", "\x7f", "\x85", "\x9f", "\u2028", "\ud800",
                      "\udfff", "\u200b", "\ufeff", " ", "\n\n"]),
    hst.sampled_from([-1, 0, 1, 2]))
_ODD = hst.one_of(_ODD, _EDGE_TEXT, hst.sampled_from([2.0, True, 1.0, 1e300, 10 ** 40]))
_LINE = {"id": "L1", "sku": "SKU-1", "category": "books", "brand": "acme", "seller": "first_party",
         "product_type": "physical", "unit_price": "1500", "quantity": 2, "name": "Book"}
_CART = {"id": "c", "currency": "JPY", "channel": "web", "lines": [_LINE, dict(_LINE, id="L2")],
         "shipping": {"method": "standard", "price": "500"}}
_ACCOUNT = {"id": "a", "region": "JP", "tier": "prime", "segments": ["vip"], "order_count": 3, "time_zone": "Asia/Tokyo"}
_ACCOUNT_FULL = dict(_ACCOUNT, promotional_balance=[
    {"id": "lot-1", "amount": "500", "currency": "JPY", "granted_at": "2026-11-01T00:00:00+09:00",
     "expires_at": "2026-12-01T00:00:00+09:00",
     "pays_for": {"categories": ["books"], "excludes": ["digital"], "shipping": True}},
    {"id": "lot-2", "amount": "12.50", "currency": "USD", "granted_at": "2026-11-01T00:00:00Z"}],
    gift_card={"amount": "1000", "currency": "JPY"},
    points={"balance": 100, "value": "1", "currency": "JPY", "use": "as_needed"})


@hst.composite
def _mutated(draw, base):
    doc = {k: (dict(v) if isinstance(v, dict) else [dict(i) if isinstance(i, dict) else i for i in v]
               if isinstance(v, list) else v) for k, v in base.items()}
    for _ in range(draw(hst.integers(0, 3))):
        target = doc
        if "lines" in doc and isinstance(doc["lines"], list) and doc["lines"] and draw(hst.booleans()):
            target = doc["lines"][draw(hst.integers(0, len(doc["lines"]) - 1))]
            if not isinstance(target, dict):
                continue
        _mutate(draw, target, ["colour", "id", "brand", "segments", "shipping"])
    return doc


def _mutate(draw, node: dict, new_keys: list[str]) -> None:
    """Set one of `node`'s keys to an odd value, drop one, or add one of `new_keys`."""
    action = draw(hst.sampled_from(["set", "drop", "add"]))
    keys = sorted(node)
    if action == "drop" and keys:
        node.pop(draw(hst.sampled_from(keys)))
    elif action == "set" and keys:
        node[draw(hst.sampled_from(keys))] = draw(_ODD)
    else:
        node[draw(hst.sampled_from(new_keys))] = draw(_ODD)


_PROMOTION = {"id": "p", "name": "P", "status": "active", "currency": "JPY", "code": "SAVE",
              "window": {"starts": "2026-11-01T00:00:00+09:00", "ends": "2026-12-01T00:00:00+09:00"},
              "eligibility": {"all": [{"name": "region", "operator": "equal_to", "value": "JP"},
                                      {"name": "first_order", "operator": "is_true"},
                                      {"name": "customer_segments", "operator": "contains_all", "value": ["vip"]},
                                      {"any": [{"name": "eligible_subtotal", "operator": "greater_than",
                                                "value": "3000"}]}]},
              "targets": {"include": {"categories": ["books"]}, "exclude": {"sellers": ["third_party"]}},
              "benefits": [{"type": "tiered", "basis": "eligible_quantity",
                         "tiers": [{"at": 2, "percent": 5}, {"at": 4, "amount": "300"}]}],
              "stacking": {"priority": 1, "exclusive": False}, "limits": {"total_uses": 5}}
# Traces as evaluate() writes them (golden cases): applied and not-applied entries with conditions,
# thresholds and lost_to, codes, hints, every kind of tender, grants, and the inputs.
_GOLDEN = __import__("pathlib").Path(__file__).parent / "golden"
# (Cases whose expected.json holds the whole trace: those with their own rules/.)
_FULL = sorted(p for p in _GOLDEN.glob("*/expected.json") if (p.parent / "rules").is_dir())
_TRACES = [json.loads((_GOLDEN / case / "expected.json").read_text("utf-8")) for case in (
    "g-exclusive-tie-higher-priority-wins", "g-unknown-code", "g-exclusive-beats-stackables",
    "b-points-cover-remainder", "b-lot-partial-use", "b-grant-after-days", "g-min-spend-inclusive-shortfall")]


@hst.composite
def _mutated_deep(draw, base):
    """A copy of `base` with a few values anywhere in it replaced, dropped or added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(hst.integers(1, 3))):
        parent, node = None, doc
        while isinstance(node, (dict, list)) and node and draw(hst.integers(0, 2)):
            key = draw(hst.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            parent, node = node, node[key]
        if isinstance(node, dict):
            _mutate(draw, node, ["value", "percent", "amount", "any", "all", "colour"])
        elif isinstance(node, list) and node:
            node[draw(hst.integers(0, len(node) - 1))] = draw(_ODD)
    return doc


@hsettings(max_examples=1500, deadline=None)
@given(hst.one_of(_mutated(_CART).map(lambda d: ("cart", d)), _mutated(_ACCOUNT).map(lambda d: ("account", d)),
                  _mutated_deep(_CART).map(lambda d: ("cart", d)),
                  _mutated_deep(_ACCOUNT_FULL).map(lambda d: ("account", d)),
                  _mutated_deep(_PROMOTION).map(lambda d: ("promotion", d)),
                  hst.sampled_from(_TRACES).flatmap(_mutated_deep).map(lambda d: ("trace", d))))
def test_the_quick_check_never_passes_what_jsonschema_refuses(case):
    kind, doc = case
    if quick_valid(kind, doc):
        assert list(_validator(kind).iter_errors(doc)) == []


def test_the_quick_check_passes_every_golden_trace():
    assert len(_FULL) >= 100
    for path in _FULL:
        assert quick_valid("trace", json.loads(path.read_text("utf-8"))), path.parent.name


def test_the_quick_check_refuses_an_edited_trace():
    trace = _TRACES[0]
    assert quick_valid("trace", trace)
    assert not quick_valid("trace", dict(trace, format=2))
    assert not quick_valid("trace", dict(trace, format=True))            # JSON's true is not 1
    assert not quick_valid("trace", dict(trace, colour="red"))
    assert not quick_valid("trace", dict(trace, applied=[dict(trace["applied"][0], amount=500)]))
    assert not quick_valid("trace", dict(trace, inputs=dict(trace["inputs"], usage={"p": []})))
    assert quick_valid("trace", dict(trace, inputs=dict(trace["inputs"], usage={"p": {}})))


def test_a_trace_the_quick_check_passes_still_gets_the_bounds_walk():
    # the trace schema caps nothing and leaves `inputs.cart` a plain object, so passing the quick check
    # says nothing about depth or huge numbers in there: check() still refuses them before anything
    # serialises or evaluates the document
    from engine.schemas import MAX_DEPTH, check
    trace = _TRACES[0]
    deep: dict = {}
    node = deep
    for _ in range(MAX_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    for cart in (dict(trace["inputs"]["cart"], extra=deep), dict(trace["inputs"]["cart"], extra=10 ** 40)):
        doc = dict(trace, inputs=dict(trace["inputs"], cart=cart))
        assert quick_valid("trace", doc)
        assert check("trace", doc) != []
    assert check("trace", trace) == []


def test_the_quick_check_passes_ordinary_carts_and_accounts():
    assert quick_valid("cart", _CART) and quick_valid("account", _ACCOUNT) and quick_valid("promotion", _PROMOTION)
    assert quick_valid("account", _ACCOUNT_FULL)
    assert quick_valid("account", dict(_ACCOUNT_FULL, points=dict(_ACCOUNT_FULL["points"], use=7)))
    assert not quick_valid("cart", dict(_CART, colour="red"))


def test_the_quick_check_refuses_a_string_its_pattern_refuses():
    assert not quick_valid("cart", dict(_CART, lines=[dict(_LINE, category="Books")]))
    assert not quick_valid("cart", dict(_CART, lines=[dict(_LINE, category="books!")]))
    assert quick_valid("cart", _CART)


# Under `not`, `if` and `oneOf` the compiled checks must be exact: False only for what jsonschema
# refuses too. Every $defs node (and each schema's root) that compiles in that mode is held to
# jsonschema's verdict both ways, on values cut from the documents above, mutated or not.
def _parts(doc):
    yield doc
    for value in (doc.values() if isinstance(doc, dict) else doc if isinstance(doc, list) else ()):
        yield from _parts(value)


_SAMPLES = [part for base in (_CART, _ACCOUNT_FULL, _PROMOTION, *_TRACES[:3]) for part in _parts(base)]


def _exact_checks():
    from engine.schemas import _Unsupported, _compile, schema
    out = []
    for kind in ("cart", "account", "promotion", "trace"):
        root = schema(kind)
        for name in [None, *root.get("$defs", {})]:
            node = root if name is None else root["$defs"][name]
            try:
                check = _compile(node, root, {}, exact=True)
            except _Unsupported:
                continue
            target = root if name is None else {"$defs": root["$defs"], "$ref": f"#/$defs/{name}"}
            out.append((f"{kind}:{name or 'root'}", check, Validator(target)))
    return out


_EXACT = _exact_checks()


def test_the_exact_checks_cover_every_fused_shape():
    # (nodes with uniqueItems below them are left out: that check is not exact)
    names = {name for name, _, _ in _EXACT}
    assert {"cart:root", "cart:line", "account:money", "promotion:tier", "promotion:units",
            "promotion:variables", "promotion:percent", "trace:root", "trace:tender_use",
            "trace:scope"} <= names and len(names) >= 20


@hsettings(max_examples=3000, deadline=None)
@given(hst.sampled_from(_EXACT),
       hst.one_of(_ODD, hst.sampled_from(_SAMPLES),
                  hst.sampled_from([s for s in _SAMPLES if isinstance(s, (dict, list)) and s]).flatmap(_mutated_deep)))
def test_exact_checks_agree_with_jsonschema_both_ways(case, value):
    name, check, validator = case
    assert check(value) == validator.is_valid(value), name


# Each fused shape and its variants, on small schemas, against every value below, twice (the answer
# must not depend on earlier calls): exact checks agree with jsonschema
# both ways; the others never pass what it refuses.
_SMALL_SCHEMAS = [
    {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^a"},
    {"type": "string", "maxLength": 1},
    {"minLength": 2, "pattern": "^a"},
    {"maxLength": 1},
    {"type": "integer", "minimum": 1, "maximum": 3},
    {"type": "integer", "minimum": 1},
    {"type": "integer"},
    {"minimum": 1, "exclusiveMaximum": 3},
    {"exclusiveMinimum": 1, "maximum": 3},
    {"type": "number", "maximum": 2},
    {"enum": ["a", "b"]},
    {"type": "string", "enum": ["a", "bb"]},
    {"enum": ["a", "bb"], "minLength": 2},
    {"const": True},
    {"const": "a"},
    {"const": 1},
    {"const": 2.5},
    {"const": None},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"properties": {"a": {"const": "x"}}, "additionalProperties": {"type": "string", "maxLength": 1}},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
     "additionalProperties": {"type": "object"}, "maxProperties": 2},
    {"not": {"additionalProperties": {"type": "integer"}}},
    {"type": "boolean"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
    {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
    {"maxItems": 1},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "maxProperties": 1},
    {"properties": {"a": {"const": "x"}}, "required": ["a"]},
    {"required": ["a"], "minProperties": 2},
    {"type": ["integer", "string"], "pattern": "^1", "exclusiveMinimum": 0},
    {"oneOf": [{"type": "integer"}, {"minimum": 0}]},
    {"anyOf": [{"type": "string", "maxLength": 1}, {"type": "integer", "maximum": 1}]},
    {"not": {"type": "object", "required": ["a"]}},
    {"if": {"properties": {"k": {"const": "a"}}, "required": ["k"]}, "then": {"required": ["v"]},
     "else": {"not": {"required": ["v"]}}},
    {"allOf": [{"type": "object"}, {"required": ["a"]}, {"maxProperties": 2}]},
    {"type": "object", "allOf": [{"required": ["a"]}], "properties": {"a": {"enum": ["x"]}}},
    {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string", "maxLength": 1}}},
    {"$defs": {"list": {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/list"}]}}},
     "$ref": "#/$defs/list"},
]
_SMALL_VALUES = [None, True, False, 0, 1, 2, 3, 4, 1.0, 2.0, 2.5, float("nan"), -1, "", "a", "aa", "aaa", "aaaa",
                 {"a": 1, "b": {}}, {"a": 1, "b": []}, {"a": "x", "b": "y"}, {"a": "x", "b": "yy"}, {"b": "y"},
                 {"a": 1, "b": {}, "c": {}}, [None], {"a": None},
                 "b", "bb", "a\n", "x", "1", "12", [], [1], [1, 2], [1, 2, 3], [True], [[1], [2, [3]]], [["x"]],
                 ["a", "a"], ["a", "b"], {}, {"a": 1}, {"a": 1, "b": 2}, {"a": "x"}, {"a": True}, {"a": 1.0},
                 {"k": "a"}, {"k": "a", "v": 1}, {"k": "b", "v": 1}, {"k": "b"}, {"v": 1}]


def assert_fused_checks_agree(node, values):
    """The quick check compiled from `node` says True only for values jsonschema accepts (and, where it
    compiles exactly, False only for values it refuses), twice, so a cached compilation is checked too."""
    from engine.schemas import _Unsupported, _compile
    validator = Validator(node)
    loose = _compile(node, node, {}, exact=False)
    try:
        exact = _compile(node, node, {}, exact=True)
    except _Unsupported:
        exact = None
    for _ in range(2):
        for value in values:
            valid = validator.is_valid(value)
            assert not loose(value) or valid, value
            if exact is not None:
                assert exact(value) == valid, value


@pytest.mark.parametrize("node", _SMALL_SCHEMAS, ids=lambda n: json.dumps(n)[:60])
def test_fused_checks_agree_with_jsonschema_on_small_schemas(node):
    assert_fused_checks_agree(node, _SMALL_VALUES)


# --- whole-text patterns, true integers, clean text, caps ----------------------------------------

def _nodes(node, where=""):
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key not in ("enum", "const"):
                yield from _nodes(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nodes(value, f"{where}/{i}")


_KINDS = ("promotion", "ruleset", "cart", "account", "trace")
_PATTERNS = sorted({(kind, node["pattern"]) for kind in _KINDS for _, node in _nodes(__import__("engine.schemas").schemas.schema(kind))
                    if isinstance(node.get("pattern"), str)})


@pytest.mark.parametrize("kind, pattern", _PATTERNS)
def test_every_pattern_is_anchored_and_reads_the_same_in_ecma_262_and_python(kind, pattern):
    # ^...$ around the whole pattern, and no class whose meaning differs between the two dialects
    assert pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")
    for construct in ("\\s", "\\S", "\\d", "\\D", "\\w", "\\W", "\\b", "\\Z", "\\A", "(?"):
        assert construct not in pattern, construct


@hsettings(max_examples=400, deadline=None)
@given(hst.sampled_from(_PATTERNS).flatmap(
    lambda kp: hst.tuples(hst.just(kp[1]), hst.from_regex(kp[1], fullmatch=True),
                          hst.sampled_from(["\n", "\r\n", "\x00", " \n"]))))
def test_a_pattern_matches_the_whole_text_in_the_validator_and_the_quick_check(case):
    from engine.schemas import _compile
    pattern, text, tail = case
    node = {"type": "string", "pattern": pattern}
    quick = _compile(node, node, {}, exact=True)
    assert Validator(node).is_valid(text) == quick(text)
    assert not Validator(node).is_valid(text + tail) and not quick(text + tail)


def test_a_category_with_a_trailing_newline_fails_the_schema_once_naming_the_character():
    from engine.schemas import check
    line = dict(_LINE, category="alcohol\n")
    assert check("cart", dict(_CART, lines=[line])) == [(("lines", 0, "category"),
                                                          "must not contain the character U+000A (at position 7)")]


@pytest.mark.parametrize("value", ["Book\x00", "Bo\x1bok", "Book\x7f", "Book\x85", "Bo\ud800ok"])
def test_control_characters_and_lone_surrogates_are_refused_in_free_text(value):
    from engine.schemas import check
    [(path, message)] = check("cart", dict(_CART, lines=[dict(_LINE, name=value)]))
    assert path == ("lines", 0, "name") and "must not contain the character U+" in message
    assert not quick_valid("cart", dict(_CART, lines=[dict(_LINE, name=value)]))


def test_a_description_may_span_lines_but_holds_no_other_control_character():
    from engine.schemas import check
    assert check("promotion", dict(_PROMOTION, description="line one\n\tline two\n")) == []
    assert quick_valid("promotion", dict(_PROMOTION, description="line one\nline two\n"))
    [(path, message)] = check("promotion", dict(_PROMOTION, description="notes\x1b[2J"))
    assert path == ("description",) and "U+001B" in message


@pytest.mark.parametrize("value", [2.0, True, 1.0])
def test_an_integer_field_refuses_floats_and_booleans(value):
    from engine.schemas import check
    [(path, _)] = check("cart", dict(_CART, lines=[dict(_LINE, quantity=value)]))
    assert path == ("lines", 0, "quantity")
    assert not quick_valid("cart", dict(_CART, lines=[dict(_LINE, quantity=value)]))


def test_every_text_and_list_in_the_input_schemas_has_a_cap():
    from engine.schemas import schema
    for kind in ("promotion", "ruleset", "cart", "account"):
        for where, node in _nodes(schema(kind)):
            types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
            if where.endswith("/if") or "enum" in node or "const" in node:
                continue
            if "string" in types:
                assert isinstance(node.get("maxLength"), int), (kind, where)
            if "array" in types:
                assert isinstance(node.get("maxItems"), int), (kind, where)


def test_text_lengths_fit_the_ledgers_columns():
    from engine.schemas import schema
    assert schema("account")["properties"]["id"]["maxLength"] <= 128            # promo_balances.account_id
    assert schema("account")["$defs"]["lot"]["properties"]["id"]["maxLength"] <= 128   # promo_balances.lot_id
    assert schema("account")["$defs"]["currency"]["maxLength"] == 3             # promo_balances.currency
    assert schema("promotion")["properties"]["id"]["maxLength"] <= 64           # promo_promotions.promotion_id
    assert schema("cart")["properties"]["id"]["maxLength"] <= 128


def test_a_document_nested_beyond_the_bound_is_refused_before_jsonschema_sees_it():
    from engine.schemas import MAX_DEPTH, check
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    [(path, message)] = check("cart", dict(_CART, id=deep))
    assert path[0] == "id" and f"deeper than {MAX_DEPTH}" in message


def test_a_number_with_thousands_of_digits_is_refused_without_printing_it():
    from engine.schemas import check
    [(path, message)] = check("cart", dict(_CART, lines=[dict(_LINE, quantity=10 ** 5000)]))
    assert path == ("lines", 0, "quantity") and "more than 30 digits" in message and len(message) < 200


def test_a_huge_text_is_refused_and_echoed_short():
    from engine.schemas import check
    [(path, message)] = check("cart", dict(_CART, lines=[dict(_LINE, category="x" * 10_000_000)]))
    assert path == ("lines", 0, "category") and "at most 64" in message and len(message) < 300
    problems = check("promotion", dict(_PROMOTION, status="y" * 3000))
    assert problems and all(len(m) < 400 for _, m in problems)


def test_a_list_over_its_cap_is_refused_by_the_cap_alone():
    from engine.schemas import check
    [(path, message)] = check("account", dict(_ACCOUNT, segments=[f"s{i}" for i in range(100_000)]))
    assert path == ("segments",) and message == "has 100000 items; at most 100 are allowed"
    [(path, message)] = check("account", dict(_ACCOUNT, segments=[f"s{i}" for i in range(150)]))
    assert path == ("segments",) and message == "has 150 items; at most 100 are allowed"
