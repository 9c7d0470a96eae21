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
