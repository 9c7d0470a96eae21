"""engine/decide.py: the parts of deciding that the golden cases and the oracle do not pin by themselves."""
from __future__ import annotations

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
