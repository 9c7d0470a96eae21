"""The benchmark's inputs are what it says: seeded, valid, and the baseline runs on them."""
import random
from datetime import datetime

from bench import baseline, generate
from engine import evaluate
from engine.ruleset import build_ruleset


def test_the_generator_is_seeded_and_its_rule_sets_load():
    docs = generate.ruleset_docs(40, 5, out_of_scope=20)
    assert generate.files_of(docs) == generate.files_of(generate.ruleset_docs(40, 5, out_of_scope=20))
    assert docs[:40] == generate.ruleset_docs(40, 5)   # the in-scope part does not depend on the rest
    rules = build_ruleset(generate.files_of(docs))
    assert len(rules.promotions) == 60


def test_promotions_for_other_markets_are_out_of_scope_for_every_benchmark_cart():
    docs = generate.ruleset_docs(30, 5, out_of_scope=200)
    rules = build_ruleset(generate.files_of(docs))
    rnd = random.Random(1)
    for _ in range(5):
        trace = evaluate(rules, generate.cart(rnd, 20), generate.account(rnd), codes=[], now=generate.NOW)
        listed = {a.promotion for a in trace.applied} | {n.promotion for n in trace.not_applied}
        assert not any(pid.startswith("x") for pid in listed)


def test_the_business_rules_baseline_runs_on_the_same_inputs():
    docs = generate.ruleset_docs(30, 5)
    rnd = random.Random(2)
    total = baseline.evaluate_with_business_rules(baseline.prepare(docs), generate.cart(rnd, 10), generate.account(rnd),
                                                  [], datetime.fromisoformat(generate.NOW))
    assert total >= 0


def test_the_phase_timer_covers_every_phase_and_puts_evaluate_back_as_it_was():
    import sys
    from bench import phases
    module = sys.modules["engine.evaluate"]
    before = {name: getattr(module, name) for name in phases.PHASES}
    docs = generate.ruleset_docs(20, 5)
    rules = build_ruleset(generate.files_of(docs))
    rnd = random.Random(3)
    inputs = [(generate.cart(rnd, 5), generate.account(rnd), []) for _ in range(3)]
    spent = phases.phases(rules, inputs, runs=6)
    assert set(spent) == set(phases.PHASES) | {"everything else"}
    assert spent["resolve"] > 0 and spent["parse_cart"] > 0
    assert {name: getattr(module, name) for name in phases.PHASES} == before


def test_ended_campaigns_are_for_the_benchmark_markets_and_out_of_scope_by_their_window():
    docs = generate.ruleset_docs(10, 5, ended=100)
    ended = [d for d in docs if d["id"].startswith("e")]
    assert len(ended) == 100 and all(d["window"]["ends"] < "2026" for d in ended)
    rules = build_ruleset(generate.files_of(docs))
    rnd = random.Random(4)
    trace = evaluate(rules, generate.cart(rnd, 30), generate.account(rnd), codes=[], now=generate.NOW)
    listed = {a.promotion for a in trace.applied} | {n.promotion for n in trace.not_applied}
    assert not any(pid.startswith("e") for pid in listed)
    automatic_ended = sum(1 for d in ended if "code" not in d)
    assert dict(trace.out_of_scope)["expired"] >= automatic_ended


def test_every_shape_is_seeded_and_loads_and_the_new_shapes_write_sets():
    for shape in generate.SHAPES:
        docs = generate.shape_docs(shape, 60, 5)
        assert docs == generate.shape_docs(shape, 60, 5)
        assert len(build_ruleset(generate.files_of(docs)).promotions) == 60
    docs = generate.shape_docs("mixed", 300, 5)
    text = repr(docs)
    assert "'any': [{'name': 'region'" in text and "'name': 'customer_tier'" in text
    assert "'sales_channel'" in text and "contains_all" in text and "combines_with" in text
    assert any(len(d["benefits"]) > 1 for d in docs) and any("class" in d["stacking"] for d in docs)
    assert 0.2 <= sum("code" in d for d in docs) / len(docs) <= 0.3


def test_the_floor_decides_the_same_total_discount_as_evaluate_on_every_cart_of_every_shape():
    from bench import floor, run
    now = datetime.fromisoformat(generate.NOW)
    for shape in generate.SHAPES:
        docs = generate.shape_docs(shape, 150, 11)
        rules = build_ruleset(generate.files_of(docs))
        for lines in (5, 40):
            run.check_floor(rules, floor.Floor(rules, "JPY", now), run.carts(shape, lines, docs, 12))


def test_the_floor_check_catches_a_floor_that_decides_differently():
    import pytest
    from bench import floor, run
    docs = generate.shape_docs("region-sets", 100, 11)
    rules = build_ruleset(generate.files_of(docs))
    wrong = floor.Floor(rules, "JPY", datetime.fromisoformat(generate.NOW))
    wrong.by_region = {}   # finds no automatic promotion
    with pytest.raises(run.FloorDisagrees):
        run.check_floor(rules, wrong, run.carts("region-sets", 40, docs, 12))


def test_added_out_of_scope_promotions_of_each_kind_never_apply_and_region_sets_are_counted():
    for kind in generate.OUT_OF_SCOPE:
        docs = generate.shape_docs("region-sets", 20, 5, added=kind, extra=150)
        assert docs[:20] == generate.shape_docs("region-sets", 20, 5)
        rules = build_ruleset(generate.files_of(docs))
        rnd = random.Random(6)
        for _ in range(4):
            trace = evaluate(rules, generate.cart(rnd, 20), generate.account(rnd, "region-sets"), codes=[],
                             now=generate.NOW)
            added = {d["id"] for d in docs[20:]}
            assert not added & {a.promotion for a in trace.applied}
            listed = {n.promotion for n in trace.not_applied} & added
            if kind != "other tiers":   # tier misses are listed as condition_failed (see engine/index.py)
                assert not listed
            else:
                assert {n.reason.value for n in trace.not_applied if n.promotion in listed} <= {"condition_failed", "not_active"}
