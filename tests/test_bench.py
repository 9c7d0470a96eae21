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
    from bench import floor
    module = sys.modules["engine.evaluate"]
    before = {name: getattr(module, name) for name in floor.PHASES}
    docs = generate.ruleset_docs(20, 5)
    rules = build_ruleset(generate.files_of(docs))
    rnd = random.Random(3)
    inputs = [(generate.cart(rnd, 5), generate.account(rnd), []) for _ in range(3)]
    spent = floor.phases(rules, inputs, runs=6)
    assert set(spent) == set(floor.PHASES) | {"everything else"}
    assert spent["resolve"] > 0 and spent["parse_cart"] > 0
    assert {name: getattr(module, name) for name in floor.PHASES} == before


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
