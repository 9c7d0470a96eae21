"""How build_ruleset loads a large rule set without holding on to more than it needs. It keeps, past each
file's own checks, only the positions its checks across files point at (`ruleset.CROSS_FILE_PATHS`,
`Positions.only`): those problems must point exactly where the file's full positions would. And checking
a file leaves no reference cycles, so that what it discards is freed at once, not by the garbage
collector, which build_ruleset pauses while it builds and leaves as it found it."""
from __future__ import annotations

import gc

import pytest

from bench import generate
from bench.run import SEED
from engine import RuleFileError, ruleset, yamlsafe
from engine.ruleset import build_ruleset
from engine.yamlsafe import Positions, Spot


def test_only_keeps_each_path_its_ancestors_and_everything_under_it():
    full = Positions({(): Spot(1, 1, None), ("a",): Spot(1, 1, None), ("a", "b"): Spot(2, 3, None),
                      ("a", "b", 0): Spot(2, 7, "x"), ("a", "b", 1): Spot(3, 7, "y"), ("a", "c"): Spot(4, 3, "1"),
                      ("ab",): Spot(5, 1, "z"), ("d",): Spot(6, 1, "NO")})
    kept = full.only(("a", "b"), ("d",), ("missing", "x"))
    assert type(kept) is Positions
    assert set(kept) == {(), ("a",), ("a", "b"), ("a", "b", 0), ("a", "b", 1), ("d",)}
    for path in [("a", "b"), ("a", "b", 1), ("a", "b", 5), ("d",), ("d", "e"), ("missing", "x"), ("a", "b", 0, 2)]:
        assert kept.locate(path) == full.locate(path)
    assert full.only(()) == full


RULE = """id: {id}
name: Promotion {id}
status: active
currency: JPY
code: {code}
targets:
  include: all
benefits:
- type: amount_off
  scope: per_order
  amount: '500'
stacking:
  priority: 1
  exclusive: true
  combines_with: [{classes}]
"""
SETTINGS = b"currencies: [JPY]\n"


def problems(files: dict[str, bytes]) -> list:
    try:
        build_ruleset(files)
    except RuleFileError as exc:
        return list(exc.problems)
    raise AssertionError("the rule set loaded")


def test_problems_across_files_point_where_the_full_positions_would(monkeypatch):
    files = {"rules/_settings.yaml": SETTINGS}
    for i, (code, classes) in enumerate([("SAVE", "order"), ("save", "order, nope"), ("' Save'", "\n  - x\n  - 'no'"),
                                         ("OTHER", "'yes', item")]):
        text = RULE.format(id=f"p{i}", code=code, classes=classes)
        if classes.startswith("\n"):
            text = text.replace("combines_with: [\n", "combines_with:\n").replace("]\n", "\n")
        files[f"rules/p{i}.yaml"] = text.encode()
    trimmed = problems(files)
    assert {p.path for p in trimmed} >= {"$.code", "$.stacking.combines_with[1]", "$.stacking.combines_with[0]"}
    monkeypatch.setattr(yamlsafe.Positions, "only", lambda self, *paths: self)
    assert problems(files) == trimmed


def test_loading_a_rule_set_leaves_no_reference_cycles():
    good = generate.files_of(generate.shape_docs("mixed", 100, SEED))
    bad = dict(good)
    for i, name in enumerate(sorted(good)[1:40]):   # a problem of each kind the checks find, in some files
        text = good[name].decode()
        bad[name] = [text.replace("priority:", "priority: 010 #"), text.replace("'", "", 2), text + "x: 1\n",
                     text.replace("currency: JPY", "currency: EUR"), text + "window: {ends: '1960-01-01T00:00Z'}\n",
                     "a: &x 1\n", "a: [\n", text.replace("value: ", "value: 1", 1)][i % 8].encode()
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        rules = build_ruleset(good)
        assert gc.collect() == 0
        try:
            build_ruleset(bad)
        except RuleFileError as exc:
            assert len(exc.problems) > 20
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
    assert len(rules.promotions) == 100


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("valid", [True, False])
def test_the_collector_is_paused_while_a_rule_set_is_built_and_left_as_it_was(monkeypatch, enabled, valid):
    seen = []
    real = ruleset._load_promotion

    def spy(*args):
        seen.append(gc.isenabled())
        return real(*args)
    monkeypatch.setattr(ruleset, "_load_promotion", spy)
    files = {"rules/_settings.yaml": SETTINGS,
             "rules/p0.yaml": RULE.format(id="p0" if valid else "other", code="SAVE", classes="order").encode()}
    (gc.enable if enabled else gc.disable)()
    try:
        if valid:
            build_ruleset(files)
        else:
            assert problems(files)
        assert gc.isenabled() is enabled and seen == [False]
    finally:
        gc.enable()
