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
    assert money_rule["then"]["properties"]["value"] == {"$ref": "#/$defs/money"}


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

from engine.schemas import quick_valid, validator as _validator  # noqa: E402

_ODD = hst.sampled_from([None, True, False, 0, 1, -1, 1.5, 2.0, 10_000, "", "x", "JP", "jp", "2", "12.50", "0",
                         "-1", "1e3", "web", "tv", "first_party", "physical", "Asia/Tokyo", "a" * 70, [], ["x"],
                         ["vip", "vip"], {}, {"method": "std", "price": "5"},
                         # edges of the fused checks: a pattern's `$` before a final newline, lengths at
                         # their bounds, non-ASCII digits, a too-fine price, NaN, bounds of integers
                         "12.50\n", "JP\n", "vip\n", "\n", "a" * 64, "a" * 65, "٣", "0.0000001", "0.000001",
                         float("nan"), 9999, 9999.0, 10**12, 10**12 + 1, 0.0, -0.0, "as_needed", "as needed",
                         ["vip", "gold"], ["third_party", "third_party"], [1, 1], [{"a": 1}]]
                        ).map(copy.deepcopy)   # a fresh copy each draw: mutations must not change the pool
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
              "reward": {"type": "tiered", "basis": "eligible_quantity",
                         "tiers": [{"at": 2, "percent": 5}, {"at": 4, "amount": "300"}]},
              "stacking": {"priority": 1, "exclusive": False}, "limits": {"total_uses": 5}}


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
                  _mutated_deep(_PROMOTION).map(lambda d: ("promotion", d))))
def test_the_quick_check_never_passes_what_jsonschema_refuses(case):
    kind, doc = case
    if quick_valid(kind, doc):
        assert list(_validator(kind).iter_errors(doc)) == []


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


_SAMPLES = [part for base in (_CART, _ACCOUNT_FULL, _PROMOTION) for part in _parts(base)]


def _exact_checks():
    from jsonschema import Draft202012Validator
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
            out.append((f"{kind}:{name or 'root'}", check, Draft202012Validator(target)))
    return out


_EXACT = _exact_checks()


def test_the_exact_checks_cover_every_fused_shape():
    # (nodes with uniqueItems below them are left out: that check is not exact)
    names = {name for name, _, _ in _EXACT}
    assert {"cart:root", "cart:line", "account:money", "promotion:tiered", "promotion:buy_x_get_y",
            "promotion:variables", "promotion:percent"} <= names and len(names) >= 25


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
                 "b", "bb", "a\n", "x", "1", "12", [], [1], [1, 2], [1, 2, 3], [True], [[1], [2, [3]]], [["x"]],
                 ["a", "a"], ["a", "b"], {}, {"a": 1}, {"a": 1, "b": 2}, {"a": "x"}, {"a": True}, {"a": 1.0},
                 {"k": "a"}, {"k": "a", "v": 1}, {"k": "b", "v": 1}, {"k": "b"}, {"v": 1}]


@pytest.mark.parametrize("node", _SMALL_SCHEMAS, ids=lambda n: json.dumps(n)[:60])
def test_fused_checks_agree_with_jsonschema_on_small_schemas(node):
    from jsonschema import Draft202012Validator
    from engine.schemas import _Unsupported, _compile
    validator = Draft202012Validator(node)
    loose = _compile(node, node, {}, exact=False)
    try:
        exact = _compile(node, node, {}, exact=True)
    except _Unsupported:
        exact = None
    for _ in range(2):
        for value in _SMALL_VALUES:
            valid = validator.is_valid(value)
            assert not loose(value) or valid, value
            if exact is not None:
                assert exact(value) == valid, value
