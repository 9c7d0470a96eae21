"""The rule-file schemas document every field for the marketer who edits the YAML: a `description`, a
`markdownDescription` (what an editor shows on hover and in completion) and at least one `examples`
entry that is itself valid where it is written. A field is every entry of a `properties` mapping and
of `$defs`, at any depth, including the per-variable shapes in a condition's `then` branches; an
`if` is a test, not a field, and is not walked."""
from __future__ import annotations

import copy
from typing import Any, Iterator

import pytest

from engine import schemas

DOCUMENTED = ("promotion", "ruleset")   # the schemas of the files a marketer edits


def fields(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    """(path, schema) of every field under `node`."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from fields(item, path + (i,))
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("if", "enum", "const", "examples", "default"):
            continue
        if key in ("properties", "$defs"):
            for name, sub in value.items():
                yield path + (key, name), sub
                yield from fields(sub, path + (key, name))
        elif isinstance(value, (dict, list)):
            yield from fields(value, path + (key,))


def problems(root: dict) -> list[str]:
    """Every field without its three annotations, and every example its own field refuses."""
    out = []
    for path, node in fields(root):
        where = "/".join(map(str, path))
        for key in ("description", "markdownDescription"):
            if not (isinstance(node.get(key), str) and node[key].strip()):
                out.append(f"{where}: no {key}")
        examples = node.get("examples")
        if not (isinstance(examples, list) and examples):
            out.append(f"{where}: no examples")
            continue
        # the field's own schema, with the root's $defs beside it so that its $refs resolve
        check = schemas.Validator(dict(node, **{"$defs": root.get("$defs", {})}))
        for example in examples:
            for error in check.iter_errors(example):
                out.append(f"{where}: example {example!r} is invalid: {error.message}")
    return out


@pytest.mark.parametrize("kind", DOCUMENTED)
def test_every_field_has_a_description_a_markdown_description_and_a_valid_example(kind: str) -> None:
    assert problems(schemas.schema(kind)) == []


def test_the_walk_reaches_nested_fields_and_defs() -> None:
    found = {"/".join(map(str, p)) for p, _ in fields(schemas.schema("promotion"))}
    assert {"properties/stacking/properties/priority", "$defs/units/properties/choose",
            "$defs/grant_promotional_balance/properties/expires/properties/after_days",
            "$defs/leaf/allOf/5/then/properties/value", "$defs/money"} <= found
    assert not any("/if/" in f for f in found)
    assert len(found) >= 140


@pytest.mark.parametrize("field", ["choose", "after_days"])
def test_a_missing_description_deep_in_the_schema_is_found(field: str) -> None:
    root = copy.deepcopy(schemas.schema("promotion"))
    node = {"choose": root["$defs"]["units"]["properties"]["choose"],
            "after_days": root["$defs"]["grant_promotional_balance"]["properties"]["expires"]["properties"]["after_days"]}[field]
    del node["description"]
    found = problems(root)
    assert len(found) == 1 and found[0].endswith(f"{field}: no description")


def test_an_example_its_field_refuses_is_found() -> None:
    root = copy.deepcopy(schemas.schema("promotion"))
    root["$defs"]["percent_off"]["properties"]["percent"]["examples"] = ["0.15", 0.15]   # a float is no percent
    root["properties"]["status"]["examples"] = ["live"]
    found = problems(root)
    assert len(found) == 2, found   # "0.15" is a valid percent (0.15%); the float 0.15 is not
    assert found[0].startswith("properties/status: example 'live' is invalid")
    assert found[1].startswith("$defs/percent_off/properties/percent: example 0.15 is invalid")


def test_a_missing_example_and_markdown_description_in_the_settings_are_found() -> None:
    root = copy.deepcopy(schemas.schema("ruleset"))
    del root["properties"]["rounding"]["examples"]
    del root["properties"]["leftover"]["markdownDescription"]
    assert sorted(problems(root)) == ["properties/leftover: no markdownDescription", "properties/rounding: no examples"]
