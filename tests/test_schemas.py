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
from hypothesis import given, settings as hsettings, strategies as hst  # noqa: E402

from engine.schemas import quick_valid, validator as _validator  # noqa: E402

_ODD = hst.sampled_from([None, True, False, 0, 1, -1, 1.5, 2.0, 10_000, "", "x", "JP", "jp", "2", "12.50", "0",
                         "-1", "1e3", "web", "tv", "first_party", "physical", "Asia/Tokyo", "a" * 70, [], ["x"],
                         ["vip", "vip"], {}, {"method": "std", "price": "5"}])
_LINE = {"id": "L1", "sku": "SKU-1", "category": "books", "brand": "acme", "seller": "first_party",
         "product_type": "physical", "unit_price": "1500", "quantity": 2, "name": "Book"}
_CART = {"id": "c", "currency": "JPY", "channel": "web", "lines": [_LINE, dict(_LINE, id="L2")],
         "shipping": {"method": "standard", "price": "500"}}
_ACCOUNT = {"id": "a", "region": "JP", "tier": "prime", "segments": ["vip"], "order_count": 3, "time_zone": "Asia/Tokyo"}


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
        action = draw(hst.sampled_from(["set", "drop", "add"]))
        keys = sorted(target)
        if action == "drop" and keys:
            target.pop(draw(hst.sampled_from(keys)))
        elif action == "set" and keys:
            target[draw(hst.sampled_from(keys))] = draw(_ODD)
        else:
            target[draw(hst.sampled_from(["colour", "id", "brand", "segments", "shipping"]))] = draw(_ODD)
    return doc


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
    import copy
    doc = copy.deepcopy(base)
    for _ in range(draw(hst.integers(1, 3))):
        parent, node = None, doc
        while isinstance(node, (dict, list)) and node and draw(hst.integers(0, 2)):
            key = draw(hst.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            parent, node = node, node[key]
        if isinstance(node, dict):
            action = draw(hst.sampled_from(["set", "drop", "add"]))
            keys = sorted(node)
            if action == "drop" and keys:
                node.pop(draw(hst.sampled_from(keys)))
            elif action == "set" and keys:
                node[draw(hst.sampled_from(keys))] = draw(_ODD)
            else:
                node[draw(hst.sampled_from(["value", "percent", "amount", "any", "all", "colour"]))] = draw(_ODD)
        elif isinstance(node, list) and node:
            node[draw(hst.integers(0, len(node) - 1))] = draw(_ODD)
    return doc


@hsettings(max_examples=500, deadline=None)
@given(hst.one_of(_mutated(_CART).map(lambda d: ("cart", d)), _mutated(_ACCOUNT).map(lambda d: ("account", d)),
                  _mutated_deep(_PROMOTION).map(lambda d: ("promotion", d))))
def test_the_quick_check_never_passes_what_jsonschema_refuses(case):
    kind, doc = case
    if quick_valid(kind, doc):
        assert list(_validator(kind).iter_errors(doc)) == []


def test_the_quick_check_passes_ordinary_carts_and_accounts():
    assert quick_valid("cart", _CART) and quick_valid("account", _ACCOUNT) and quick_valid("promotion", _PROMOTION)
    assert not quick_valid("cart", dict(_CART, colour="red"))
