"""Shapes the quick check fuses for the rule-file load. A tagged union (`schemas._all_of`): an `allOf` of
"if <key> is one of these texts, then ..." parts is one look-up of the key's value. An object node with
only a type and required keys is one test. Each must say what jsonschema says (both ways where exact),
and a tagged union on the shipped schemas what the part-by-part check said, on every document."""
from __future__ import annotations

import copy
import json
import random

import pytest
import yaml

from bench import generate
from bench.run import SEED
from engine import schemas

from .test_schemas import assert_fused_checks_agree


def _if(key, options, then, **more):
    test = {"const": options} if isinstance(options, str) else {"enum": options}
    return {"if": {"required": [key], "properties": {key: test}}, "then": then, **more}


_SCHEMAS = [
    {"allOf": [_if("k", "a", {"required": ["v"]}), _if("k", "b", {"properties": {"v": {"type": "integer"}}})]},
    {"allOf": [_if("k", ["a", "b"], {"required": ["v"]}), _if("k", ["b", "c", "b"], {"properties": {"v": {"const": 1}}}),
               _if("k", "d", {"not": {"required": ["v"]}})]},
    {"type": "object", "required": ["k"], "properties": {"k": {"enum": ["a", "b"]}, "v": {}},
     "allOf": [_if("k", "a", {"required": ["v"]}), _if("k", "b", {"properties": {"v": {"type": "string"}}}),
               {"required": ["k"]}, {"maxProperties": 2}]},
    {"allOf": [_if("k", "a", {"required": ["v"]}), _if("j", "a", {"required": ["w"]}), _if("k", "b", {"required": ["w"]}),
               _if("j", "b", {"required": ["v"]}), _if("k", "c", {"required": ["v"]}, **{"else": {"required": ["j"]}})]},
    {"allOf": [_if("k", "a", {"type": "object", "required": ["v"]}), _if("k", "b", {"minProperties": 3})]},
    {"allOf": [_if("k", "a", {"required": ["v"]})]},
    {"allOf": [{"if": {"type": "object", "required": ["k"], "properties": {"k": {"const": "a"}}}, "then": {"required": ["v"]}},
               _if("k", "b", {"required": ["v"]}), _if("k", "a", {"maxProperties": 1})]},
    {"allOf": [_if("k", "a", {"required": ["v"]}), _if("k", "b", {"type": "string"}), _if("k", "c", {"type": "array"})]},
    {"allOf": [_if("k", ["a"], {"required": ["v"]}), {"if": {"required": ["k"], "properties": {"k": {"const": 1}}},
                                                      "then": {"required": ["w"]}}, _if("k", "b", {"required": ["w"]})]},
    {"$defs": {"a": {"required": ["v"]}}, "allOf": [_if("k", "a", {"$ref": "#/$defs/a"}), _if("k", "b", {"$ref": "#/$defs/a"})]},
    {"type": "object"}, {"required": ["k"]}, {"required": ["k", "v"]}, {"type": "object", "required": ["k"]},
    {"required": []}, {"type": "object", "required": []}, {"not": {"required": ["k"]}},
    {"if": {"required": ["k"]}, "then": {"required": ["v"]}, "else": {"if": {"required": ["j"]}, "then": {"type": "object"},
                                                                         "else": {"required": ["w"]}}},
]
_VALUES = [None, True, 0, 1, 1.0, "", "a", "b", [], ["a"], {}, {"k": "a"}, {"k": "a", "v": 1}, {"k": "a", "v": "x"},
           {"k": "b"}, {"k": "b", "v": 1}, {"k": "b", "v": "x"}, {"k": "b", "w": 1}, {"k": "c"}, {"k": "c", "v": 1},
           {"k": "c", "j": 1}, {"k": "d"}, {"k": "d", "v": 1}, {"k": 1}, {"k": 1, "w": 1}, {"k": None}, {"k": ["a"]},
           {"k": True}, {"j": "a"}, {"j": "a", "w": 1}, {"j": "b", "v": 1}, {"k": "a", "j": "a", "v": 1, "w": 1},
           {"k": "a", "j": "b", "v": 1}, {"k": "b", "v": 1, "x": 2}, {"v": 1}, {"k": "A"}, {"k": "a\n"}]


@pytest.mark.parametrize("node", _SCHEMAS, ids=lambda n: json.dumps(n)[:60])
def test_a_fused_shape_agrees_with_jsonschema(node):
    assert_fused_checks_agree(node, _VALUES)


def _part_by_part(parts, sub):
    return schemas._all([sub(n) for n in parts])


def _documents() -> list:
    docs = [yaml.safe_load(text) for text in generate.files_of(generate.shape_docs("mixed", 400, SEED)).values()]
    docs += generate.shape_docs("one-region", 100, SEED) + generate.shape_docs("region-sets", 100, SEED)
    rnd = random.Random(SEED)
    odd = [None, True, 1, 2.5, "x", "percent_off", "tiered", "region", "eligible_subtotal", "customer_segments",
           "first_order", "JP", "equal_to", "contains_all", [], ["vip"], {}, {"name": "region"}, "3000"]
    mutated = []
    for _ in range(3000):
        doc = copy.deepcopy(rnd.choice(docs))
        for _ in range(rnd.randint(1, 3)):
            node = doc
            while isinstance(node, (dict, list)) and node and rnd.random() < 0.75:
                key = rnd.choice(sorted(node) if isinstance(node, dict) else range(len(node)))
                if not isinstance(node[key], (dict, list)):
                    break
                node = node[key]
            if isinstance(node, dict) and node:
                key = rnd.choice(sorted(node) + ["name", "type", "value", "operator"])
                if rnd.random() < 0.2:
                    node.pop(key, None)
                else:
                    node[key] = copy.deepcopy(rnd.choice(odd))
            elif isinstance(node, list) and node:
                node[rnd.randrange(len(node))] = copy.deepcopy(rnd.choice(odd))
        mutated.append(doc)
    return docs + mutated


def test_the_shipped_schemas_give_the_verdicts_of_the_part_by_part_check(monkeypatch):
    docs = _documents()
    kinds = ("promotion", "ruleset", "cart", "account", "trace")
    fast = {kind: schemas._quick.__wrapped__(kind) for kind in kinds}
    monkeypatch.setattr(schemas, "_all_of", _part_by_part)
    slow = {kind: schemas._quick.__wrapped__(kind) for kind in kinds}
    verdicts = [fast["promotion"](doc) for doc in docs]
    assert verdicts == [slow["promotion"](doc) for doc in docs]
    assert 0.2 < sum(verdicts) / len(verdicts) < 0.9   # both valid and invalid documents were checked
    for doc in docs[:50]:
        assert all(fast[kind](doc) == slow[kind](doc) for kind in kinds)


def test_the_leaf_and_benefit_rules_are_looked_up_by_variable_and_type():
    root = schemas.schema("promotion")
    for name, key in (("leaf", "name"), ("benefit", "type")):
        parts = root["$defs"][name]["allOf"]
        tagged = [schemas._tagged(part) for part in parts if "else" not in part]   # an `else` is checked as is
        assert len(tagged) >= len(parts) - 1 and all(t is not None and t[0] == key for t in tagged), name
