"""engine/decide.py: the parts of deciding that the golden cases and the oracle do not pin by themselves."""
from __future__ import annotations

import json
import random

import pytest

from bench import generate
from engine import decide, evaluate
from engine.ruleset import build_ruleset


def _scenarios(shape: str, seed: int, promotions: int, carts: int, lines: int):
    docs = generate.shape_docs(shape, promotions, seed)
    rules = build_ruleset(generate.files_of(docs))
    rnd = random.Random(seed)
    return rules, [(generate.cart(rnd, lines), generate.account(rnd, shape), generate.codes_for(rnd, docs))
                   for _ in range(carts)]


@pytest.mark.parametrize("shape", generate.SHAPES)
def test_what_if_runs_on_the_promotions_that_matter_give_the_hints_of_whole_runs(shape, monkeypatch):
    """A spend hint's what-if run leaves out the promotions that discount no line the threshold reads
    (`what_if_members`); the hints must be exactly those of what-if runs of the whole candidate set."""
    seen = {"left_out": 0, "runs": 0}
    real = decide.what_if_members

    def counted(p, variable, run, first, what_if):
        members = real(p, variable, run, first, what_if)
        seen["runs"] += 1
        seen["left_out"] += len(run) - len(members)
        return members

    hinted = 0
    for seed in range(3):
        rules, inputs = _scenarios(shape, 40 + seed, 150, 6, 30)
        for cart, account, codes in inputs:
            monkeypatch.setattr(decide, "what_if_members", counted)
            narrow = evaluate(rules, cart, account, codes=codes, now=generate.NOW).to_json()
            monkeypatch.setattr(decide, "what_if_members", lambda p, variable, run, first, what_if: run)
            whole = evaluate(rules, cart, account, codes=codes, now=generate.NOW).to_json()
            assert narrow == whole
            hinted += '"kind": "spend"' in whole
    assert hinted and seen["runs"] and seen["left_out"], (hinted, seen)   # the comparison meant something


@pytest.mark.parametrize("shape", generate.SHAPES)
def test_evaluate_explains_nothing_until_the_trace_is_read_and_the_bytes_do_not_depend_on_when(shape, monkeypatch):
    """Refusals are explained (and hints settled) the first time `not_applied` or `hints` is read; the
    compact view explains only what it lists. Whatever is read first, the JSON is the same bytes."""
    explained = []
    real = decide.condition_failure
    monkeypatch.setattr(decide, "condition_failure", lambda p, leaves, ctx: explained.append(p.id) or real(p, leaves, ctx))
    rules, inputs = _scenarios(shape, 7, 150, 4, 30)
    listed = 0
    for cart, account, codes in inputs:
        first = evaluate(rules, cart, account, codes=codes, now=generate.NOW)
        assert explained == []
        eager = first.to_json()
        everything = len(explained)
        explained.clear()
        second = evaluate(rules, cart, account, codes=codes, now=generate.NOW)
        compact = second.to_json(view="compact")
        assert len(explained) <= everything
        assert second.hints == first.hints and second.to_json() == eager and second == first
        assert compact == first.to_json(view="compact")
        listed += len(first.not_applied) - len(json.loads(compact)["not_applied"])
        explained.clear()
    assert listed > 0    # the compact view did leave refusals unexplained
