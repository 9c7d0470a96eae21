"""`promo explain` (engine/whynot.py): one promotion's whole chain of checks on one cart. Its verdict and
reason are the trace's own, for every promotion of every bundled example and golden case; its steps
say where evaluate() stopped and list everything else that stands in the way."""
import json
import shutil
from pathlib import Path

import pytest

from engine import InputError, evaluate, load_ruleset, read_json
from engine.cli import main
from engine.whynot import STAGES, explain_promotion

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = ROOT / "tests" / "golden"
NOW = "2026-11-21T10:00:00+09:00"


def _cases():
    for folder in sorted(EXAMPLES.iterdir()):
        if (folder / "case.json").exists():
            yield pytest.param(folder, ROOT / "rules", id=f"example-{folder.name}")
    for folder in sorted(GOLDEN.iterdir())[::6]:          # every sixth golden case: their own rule sets
        rules = folder / "rules" if (folder / "rules").is_dir() else ROOT / "rules"
        yield pytest.param(folder, rules, id=f"golden-{folder.name}")


def _inputs(folder: Path) -> dict:
    case = read_json(folder / "case.json")
    out = {"codes": case.get("codes", []), "now": case.get("now", NOW)}
    for key in ("usage", "preview"):
        if key in case:
            out[key] = case[key]
    return out


@pytest.mark.parametrize("folder,rules_dir", list(_cases()))
def test_the_verdict_and_reason_are_the_traces_for_every_promotion(folder, rules_dir):
    rules = load_ruleset(rules_dir)
    cart, account = read_json(folder / "cart.json"), read_json(folder / "account.json")
    kw = _inputs(folder)
    trace = evaluate(rules, cart, account, **kw)
    applied = {a.promotion for a in trace.applied} | {g.promotion for g in trace.grants}
    listed = {n.promotion: n for n in trace.not_applied}
    counted = dict(trace.out_of_scope)
    for pid in rules.promotions:
        e = explain_promotion(rules, cart, account, pid, **kw)
        assert e.applies == (pid in applied), pid
        if pid in applied:
            assert e.reason is None
            assert e.amount == sum((a.amount for a in trace.applied if a.promotion == pid), trace.totals.discount * 0) + \
                sum((g.amount for g in trace.grants if g.promotion == pid), trace.totals.discount * 0)
        elif pid in listed:
            assert (e.reason, e.message) == (listed[pid].reason.value, listed[pid].message), pid
        else:                                   # out of scope: the first scope step that fails is the count's reason
            first = next(s for s in e.steps if not s.passed)
            assert first.stage == "scope" and first.reached and first.reason == e.reason and counted[e.reason] > 0, pid
        assert all(s.stage in STAGES for s in e.steps)
        assert [STAGES.index(s.stage) for s in e.steps] == sorted(STAGES.index(s.stage) for s in e.steps)
        _reached_stops_at_the_first_failure(e)


def _reached_stops_at_the_first_failure(e):
    stop = next((i for i, s in enumerate(e.steps) if not s.passed and s.stage in ("scope", "gate")), None)
    if stop is None:
        assert all(s.reached for s in e.steps)
    else:
        assert all(s.reached for s in e.steps[:stop + 1])
        assert not any(s.reached for s in e.steps[stop + 1:])


def test_a_near_miss_shows_the_threshold_shortfall_and_the_traces_hint_as_the_fix():
    rules = load_ruleset(ROOT / "rules")
    folder = EXAMPLES / "jp-near-miss"
    cart, account = read_json(folder / "cart.json"), read_json(folder / "account.json")
    trace = evaluate(rules, cart, account, now=NOW)
    [refusal] = [n for n in trace.not_applied if n.promotion == "books-500-off-over-3000"]
    e = explain_promotion(rules, cart, account, "books-500-off-over-3000", now=NOW)
    [threshold] = [s for s in e.steps if s.check == "threshold eligible_subtotal"]
    assert (threshold.expected, threshold.actual, threshold.shortfall) == (
        refusal.thresholds[0].required, refusal.thresholds[0].measured, refusal.thresholds[0].shortfall)
    [hinted] = [h for h in trace.hints if h.promotion == "books-500-off-over-3000"]
    assert e.fixes == (hinted.message,) and e.measured_on == "the cart as earlier promotions left it"


def _shop(tmp_path: Path, extra: str) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "kr-only.yaml").write_text(extra)
    return rules


KR_ONLY = """id: kr-only
name: KR only, 10% off books over 5000
status: paused
currency: JPY
eligibility:
  all:
    - name: region
      operator: equal_to
      value: KR
    - name: eligible_subtotal
      operator: greater_than_or_equal_to
      value: "5000"
targets:
  include:
    categories: [books]
benefits:
  - type: percent_off
    percent: "10"
stacking:
  priority: 10
  exclusive: false
"""


def test_an_automatic_promotion_out_of_scope_lists_every_other_problem_as_not_reached(tmp_path):
    rules = load_ruleset(_shop(tmp_path, KR_ONLY))
    folder = EXAMPLES / "jp-near-miss"
    cart, account = read_json(folder / "cart.json"), read_json(folder / "account.json")
    e = explain_promotion(rules, cart, account, "kr-only", now=NOW)
    assert (e.applies, e.reason) == (False, "region_not_eligible")
    assert dict(evaluate(rules, cart, account, now=NOW).out_of_scope)["region_not_eligible"] >= 1
    failing = [(s.check, s.reached) for s in e.steps if not s.passed]
    assert failing == [("region", True), ("status", False), ("region equal_to KR", False),
                       ("eligible_subtotal greater_than_or_equal_to ¥5,000", False),
                       ("threshold eligible_subtotal", False), ("conditions", False)]
    assert e.measured_on == "the cart before any discount"
    assert "Only for accounts in KR." in e.fixes and any("status: active" in f for f in e.fixes)
    [leaf] = [s for s in e.steps if s.check == "region equal_to KR"]
    assert (leaf.expected, leaf.actual) == ("KR", "JP")


def test_a_promotion_that_lost_to_an_exclusive_names_the_winner_and_what_it_would_have_given():
    rules = load_ruleset(ROOT / "rules")
    folder = EXAMPLES / "black-friday-exclusive"
    cart, account = read_json(folder / "cart.json"), read_json(folder / "account.json")
    e = explain_promotion(rules, cart, account, "electronics-10-off-first-party", **_inputs(folder))
    assert e.reason == "lost_to_exclusive"
    [combination] = [s for s in e.steps if s.stage == "combination"]
    assert not combination.passed and combination.actual == ["black-friday-flash-sale"]
    [benefit] = [s for s in e.steps if s.stage == "benefit"]
    alone = evaluate(rules, cart, account, **{**_inputs(folder), "now": "2026-11-29T10:00:00+09:00"})  # sale over
    assert benefit.passed and benefit.actual == next(a.amount for a in alone.applied
                                                     if a.promotion == "electronics-10-off-first-party")


def test_an_applied_promotion_shows_what_it_took_from_each_line():
    rules = load_ruleset(ROOT / "rules")
    folder = EXAMPLES / "black-friday-exclusive"
    cart, account = read_json(folder / "cart.json"), read_json(folder / "account.json")
    kw = _inputs(folder)
    e = explain_promotion(rules, cart, account, "black-friday-flash-sale", **kw)
    trace = evaluate(rules, cart, account, **kw)
    [done] = [a for a in trace.applied if a.promotion == "black-friday-flash-sale"]
    [benefit] = [s for s in e.steps if s.stage == "benefit"]
    assert e.applies and e.amount == done.amount == benefit.actual and e.fixes == ()
    assert all(f"{share.line} " in benefit.message for share in done.lines)


def test_a_code_entered_or_not_decides_its_scope_step():
    rules = load_ruleset(ROOT / "rules")
    folder = EXAMPLES / "jp-mixed-cart"
    cart, account = read_json(folder / "cart.json"), read_json(folder / "account.json")
    without = explain_promotion(rules, cart, account, "welcome-first-order-jp", now=NOW)
    assert without.reason == "code_not_entered" and without.fixes[0] == "Enter the code WELCOME."
    entered = explain_promotion(rules, cart, account, "welcome-first-order-jp", codes=["welcome"], now=NOW)
    trace = evaluate(rules, cart, account, codes=["welcome"], now=NOW)
    assert entered.steps[0].check == "code" and entered.steps[0].passed
    assert entered.applies == any(a.promotion == "welcome-first-order-jp" for a in trace.applied)


def test_a_usage_limit_reached_is_the_failing_gate():
    rules = load_ruleset(ROOT / "rules")
    folder = EXAMPLES / "jp-mixed-cart"
    cart, account = read_json(folder / "cart.json"), read_json(folder / "account.json")
    usage = {"welcome-first-order-jp": {"total_uses": 1, "customer_uses": 1, "budget_spent": "1000"}}
    e = explain_promotion(rules, cart, account, "welcome-first-order-jp", codes=["WELCOME"], now=NOW, usage=usage)
    assert e.reason == "usage_limit_reached"
    [gate] = [s for s in e.steps if not s.passed and s.stage == "gate"]
    assert gate.check == "limits" and gate.reached and "1 per customer" in gate.message


def test_explaining_changes_nothing_and_gives_the_same_bytes_twice():
    rules = load_ruleset(ROOT / "rules")
    folder = EXAMPLES / "jp-near-miss"
    cart, account = read_json(folder / "cart.json"), read_json(folder / "account.json")
    before = evaluate(rules, cart, account, now=NOW).to_json()
    first = json.dumps(explain_promotion(rules, cart, account, "snacks-buy-one-get-one", now=NOW).to_dict(), sort_keys=True)
    assert json.dumps(explain_promotion(rules, cart, account, "snacks-buy-one-get-one", now=NOW).to_dict(),
                      sort_keys=True) == first
    assert evaluate(rules, cart, account, now=NOW).to_json() == before


def test_an_unknown_promotion_is_an_input_error():
    rules = load_ruleset(ROOT / "rules")
    folder = EXAMPLES / "jp-near-miss"
    with pytest.raises(InputError, match="no promotion with id 'nope'"):
        explain_promotion(rules, read_json(folder / "cart.json"), read_json(folder / "account.json"), "nope", now=NOW)


# --- the command ---------------------------------------------------------------------------------

def _args(*more: str) -> list[str]:
    folder = EXAMPLES / "jp-near-miss"
    return ["explain", "--rules", str(ROOT / "rules"), "--cart", str(folder / "cart.json"), "--now", NOW, *more]


def test_explain_json_has_the_verdict_reason_and_steps_and_exits_zero_when_it_does_not_apply(capsys):
    assert main(_args("--promotion", "books-500-off-over-3000", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"promotion", "applies", "reason", "steps", "fixes", "message"} <= set(out)
    assert (out["promotion"], out["applies"], out["reason"]) == ("books-500-off-over-3000", False, "min_spend_not_met")
    assert all({"stage", "check", "passed", "reached", "message"} <= set(s) for s in out["steps"])


def test_explain_table_shows_each_step_and_the_fix(capsys):
    assert main(_args("--promotion", "books-500-off-over-3000")) == 0
    out = capsys.readouterr().out
    assert "does not apply (min_spend_not_met)" in out and "threshold eligible_subtotal" in out
    assert "What would make it apply" in out and "Add ¥2,120 more of eligible items" in out


@pytest.mark.parametrize("args,code,words", [
    (_args("--promotion", "books-500"), 1, "did you mean books-500-off-over-3000?"),
    (_args("--promotion", "x\x1b[31m" * 5000), 1, "no promotion with that id"),
    (_args("--promotion", "books-500-off-over-3000", "--now", "tomorrow"), 1, "--now"),
    (["explain", "--cart", "missing.json", "--promotion", "x"], 1, "--cart missing.json"),
    (_args(), 2, "--promotion"),
])
def test_explain_refuses_bad_input_in_one_line(args, code, words, capsys):
    assert main(args) == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert words in last and "Traceback" not in err and "\x1b" not in err
    if code == 1:
        assert err.count("\n") == 1                    # one line
