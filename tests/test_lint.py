"""promo lint (engine/lint.py, engine/lint_cli.py): each check fires on a small crafted rule set and not on
its fixed counterpart; the bundled rules give exactly the findings listed here; worst cases are what
evaluate() gives; SARIF points at the field's line; bad input is one line and exit 1, never a traceback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from engine.cli import main
from engine.evaluate import evaluate
from engine.lint import CHECKS, Check, common_line, lint
from engine.model import Targets
from engine.ruleset import load_ruleset

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
NOW = "2026-12-01T20:00:00+00:00"


def rule(pid: str, body: str) -> tuple[str, str]:
    return pid, f"id: {pid}\nname: {pid}\nstatus: active\n" + body


GRANT = """currency: JPY
eligibility:
  all:
    - name: region
      operator: equal_to
      value: JP
targets:
  include: {categories: [gift-cards]}
benefits:
  - type: grant_promotional_balance
    amount: "300"
    expires: {after_days: 30}
stacking:
  priority: 10
  exclusive: false
"""

PERCENT = """targets:
  include: {categories: [books]}
benefits:
  - type: percent_off
    percent: 10
stacking:
  priority: 10
  exclusive: false
"""


def ruleset_dir(tmp_path: Path, *rules: tuple[str, str], settings: str = "") -> Path:
    d = tmp_path / "rules"
    d.mkdir(parents=True)
    (d / "_settings.yaml").write_text((RULES / "_settings.yaml").read_text("utf-8") + settings, "utf-8")
    for pid, text in rules:
        (d / f"{pid}.yaml").write_text(text, "utf-8")
    return d


def findings(d: Path, now: str = NOW, catalogue=None) -> list:
    return list(lint(load_ruleset(d), datetime.fromisoformat(now), catalogue).findings)


def checks(d: Path, **kw) -> list[tuple[str, tuple[str, ...]]]:
    return [(f.check.value, f.promotions) for f in findings(d, **kw)]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def line_of(f) -> str:
    return Path(f.file).read_text("utf-8").splitlines()[f.line - 1]


# --- the table --------------------------------------------------------------------------------------

def test_every_check_has_a_severity_a_description_and_help():
    assert set(CHECKS) == set(Check)
    for info in CHECKS.values():
        assert info.severity in ("error", "warning") and info.description and info.help


# --- the bundled rules ------------------------------------------------------------------------------

BUNDLED = {
    ("window_ended", ("black-friday-flash-sale",), "black-friday-flash-sale.yaml", "ends"),
    ("worst_case", ("coffee-3-for-1000",), "coffee-3-for-1000.yaml", "price"),
    ("overlap", ("app-weekend-half-shipping", "free-shipping-over-3500"), "free-shipping-over-3500.yaml", "exclusive"),
    ("overlap", ("gift-card-charge-bonus", "slow-delivery-credit"), "gift-card-charge-bonus.yaml", "exclusive"),
    ("worst_case", ("kitchen-300-off-per-line",), "kitchen-300-off-per-line.yaml", "amount"),
    ("overlap", ("household-bulk-buy", "kw-national-day-5-off"), "kw-national-day-5-off.yaml", "exclusive"),
    ("overlap", ("app-weekend-half-shipping", "prime-shipping-300-off"), "prime-shipping-300-off.yaml", "exclusive"),
    ("overlap", ("free-shipping-over-3500", "prime-shipping-300-off"), "prime-shipping-300-off.yaml", "exclusive"),
    ("worst_case", ("snacks-buy-one-get-one", "welcome-first-order-jp"), "snacks-buy-one-get-one.yaml", "percent"),
    ("overlap", ("kw-national-day-5-off", "snacks-buy-one-get-one"), "snacks-buy-one-get-one.yaml", "exclusive"),
    ("overlap", ("kw-national-day-5-off", "spring-garden-sale"), "spring-garden-sale.yaml", "exclusive"),
    ("worst_case", ("toys-200-off-each",), "toys-200-off-each.yaml", "amount"),
    ("overlap", ("app-weekend-half-shipping", "us-ground-1-dollar-over-25"), "us-ground-1-dollar-over-25.yaml",
     "exclusive"),
}


def test_the_bundled_rules_give_exactly_the_listed_findings_each_on_its_fields_line():
    got = findings(RULES)
    assert {(f.check.value, f.promotions, Path(f.file).name, line_of(f).split(":")[0].strip(" -"))
            for f in got} == BUNDLED
    assert len(got) == len(BUNDLED)


def test_the_bundled_gift_card_bonus_and_a_new_gift_card_campaign_are_reported_as_both_granting(tmp_path):
    d = ruleset_dir(tmp_path, rule("gift-card-charge-double", GRANT))
    shutil.copy(RULES / "gift-card-charge-bonus.yaml", d)
    assert ("overlap", ("gift-card-charge-bonus", "gift-card-charge-double")) in checks(d)
    message = next(f.message for f in findings(d) if f.check is Check.OVERLAP)
    assert "can both grant promotional balance on the same order" in message


# --- overlap ----------------------------------------------------------------------------------------

def test_overlap_fires_on_two_stacking_promotions_and_not_when_one_is_exclusive(tmp_path):
    d = ruleset_dir(tmp_path, rule("a", PERCENT), rule("b", PERCENT.replace("priority: 10", "priority: 20")))
    assert ("overlap", ("a", "b")) in checks(d)
    fixed = ruleset_dir(tmp_path / "fixed", rule("a", PERCENT),
                        rule("b", PERCENT.replace("exclusive: false", "exclusive: true")))
    assert not [c for c in checks(fixed) if c[0] == "overlap"]


def test_no_overlap_when_targets_regions_windows_or_codes_keep_them_apart(tmp_path):
    other_category = PERCENT.replace("books", "toys")
    us = "currency: JPY\neligibility:\n  all:\n    - {name: region, operator: equal_to, value: US}\n"
    jp = "currency: JPY\neligibility:\n  all:\n    - {name: region, operator: equal_to, value: JP}\n"
    later = 'window: {starts: "2027-01-01T00:00:00Z", ends: "2027-02-01T00:00:00Z"}\n'
    sooner = 'window: {starts: "2026-12-02T00:00:00Z", ends: "2027-01-01T00:00:00Z"}\n'
    for n, (a, b) in enumerate([(PERCENT, other_category), (us + PERCENT, jp + PERCENT),
                                (later + PERCENT, sooner + PERCENT), (PERCENT, "code: SAVE10\n" + PERCENT)]):
        d = ruleset_dir(tmp_path / str(n), rule("a", a), rule("b", b))
        assert not [c for c in checks(d) if c[0] == "overlap"], n


def test_two_promotions_of_many_different_categories_are_kept_apart_quickly():
    # overlap asks for a line of (p's targets, q's targets, p's, q's): 200 ** 4 combinations if each is tried
    p, q = (Targets(False, categories=frozenset(f"{side}-{i}" for i in range(200))) for side in "pq")
    started = time.perf_counter()
    assert common_line(p, q, p, q) is None and common_line(p, q) is None
    assert time.perf_counter() - started < 5
    line = common_line(p, Targets(False, categories=frozenset({"p-7", "q-1"})), p)
    assert line is not None and line.category == "p-7"


def test_an_overlap_that_depends_on_an_upper_bound_on_spend_says_may(tmp_path):
    capped = "currency: JPY\neligibility:\n  all:\n    - {name: eligible_subtotal, operator: less_than, value: \"3000\"}\n"
    d = ruleset_dir(tmp_path, rule("a", PERCENT), rule("b", capped + PERCENT))
    message = next(f.message for f in findings(d) if f.check is Check.OVERLAP)
    assert " may both discount the same line" in message and "could not be decided exactly" in message


def test_a_first_order_promotion_and_a_returning_customer_one_never_overlap(tmp_path):
    first = "eligibility:\n  all:\n    - {name: first_order, operator: is_true}\n"
    again = "eligibility:\n  all:\n    - {name: order_count, operator: greater_than_or_equal_to, value: 3}\n"
    d = ruleset_dir(tmp_path, rule("a", first + PERCENT), rule("b", again + PERCENT))
    assert not [c for c in checks(d) if c[0] == "overlap"]


# --- worst case -------------------------------------------------------------------------------------

def test_the_worst_case_of_a_category_is_what_evaluate_gives_on_that_one_line_cart():
    ruleset = load_ruleset(RULES)
    report = lint(ruleset, datetime.fromisoformat(NOW))
    case = next(w for w in report.worst_case if w.name == "snacks" and w.currency == "JPY")
    assert (case.percent, case.promotions) == (Decimal(75), ("snacks-buy-one-get-one", "welcome-first-order-jp"))
    account = dict(case.account)
    cart = {"id": "c", "currency": "JPY", "channel": account["channel"],
            "lines": [{"id": "L1", "sku": "LINT-OTHER", "category": "snacks", "seller": "first_party",
                       "product_type": "physical", "unit_price": str(case.unit_price), "quantity": case.quantity}]}
    trace = evaluate(ruleset, cart, {"id": "x", "region": account["region"], "tier": account["tier"],
                                     "segments": account["segments"], "order_count": account["order_count"],
                                     "time_zone": "UTC"}, codes=case.codes, now=case.now)
    assert trace.lines[0].discount == case.discount
    assert trace.lines[0].discount * 100 / trace.lines[0].subtotal == case.percent


def test_the_worst_case_threshold_comes_from_the_settings(tmp_path):
    d = tmp_path / "rules"
    shutil.copytree(RULES, d)
    with (d / "_settings.yaml").open("a", encoding="utf-8") as f:
        f.write('lint: {max_discount_percent: "80"}\n')
    worst = {f.promotions for f in findings(d) if f.check is Check.WORST_CASE}
    assert ("snacks-buy-one-get-one", "welcome-first-order-jp") not in worst      # 75% is below 80%
    assert ("toys-200-off-each",) in worst                                         # 100% is not


def test_a_bad_lint_setting_is_a_rule_file_error_with_its_line(tmp_path, capsys):
    d = ruleset_dir(tmp_path, rule("a", PERCENT), settings="lint: {activation_lead_time: four hours}\n")
    code, out, err = run(capsys, "lint", str(d))
    line = (d / "_settings.yaml").read_text().splitlines().index("lint: {activation_lead_time: four hours}") + 1
    assert code == 1 and f"_settings.yaml:{line}:" in err and "$.lint.activation_lead_time" in err


# --- dead rules -------------------------------------------------------------------------------------

def test_contradictory_leaves_in_an_all_never_hold_and_their_fix_does(tmp_path):
    both = ("eligibility:\n  all:\n    - {name: region, operator: equal_to, value: JP}\n"
            "    - {name: region, operator: equal_to, value: US}\n")
    spend = ('currency: JPY\neligibility:\n  all:\n'
             '    - {name: eligible_subtotal, operator: greater_than_or_equal_to, value: "5000"}\n'
             '    - {name: eligible_subtotal, operator: less_than, value: "3000"}\n')
    d = ruleset_dir(tmp_path, rule("a", both + PERCENT), rule("b", spend + PERCENT.replace("books", "toys")))
    dead = [f for f in findings(d) if f.check is Check.NEVER_HOLDS]
    assert [f.promotions for f in dead] == [("a",), ("b",)]
    assert all(line_of(f).startswith("eligibility:") for f in dead)
    fixed = ruleset_dir(tmp_path / "fixed", rule("a", both.replace("equal_to, value: US", "equal_to, value: JP")
                                                  + PERCENT))
    assert not [c for c in checks(fixed) if c[0] == "never_holds"]


def test_an_active_promotion_whose_window_ended_is_reported_and_a_paused_one_is_not(tmp_path):
    ended = 'window: {starts: "2026-11-01T00:00:00Z", ends: "2026-11-30T00:00:00Z"}\n'
    d = ruleset_dir(tmp_path, rule("a", ended + PERCENT))
    [f] = [f for f in findings(d) if f.check is Check.WINDOW_ENDED]
    assert line_of(f).strip().startswith("window:")
    fixed = ruleset_dir(tmp_path / "fixed", rule("a", ended + PERCENT))
    (fixed / "a.yaml").write_text((fixed / "a.yaml").read_text().replace("status: active", "status: paused"))
    assert not findings(fixed)


def test_targets_not_in_the_catalogue_are_errors_at_the_name(tmp_path, capsys):
    d = ruleset_dir(tmp_path, rule("a", PERCENT.replace("[books]", "[books, bookz]")))
    cat = tmp_path / "cat.json"
    cat.write_text(json.dumps({"categories": ["books"], "brands": [], "skus": []}))
    code, out, err = run(capsys, "lint", str(d), "--catalog", str(cat), "--now", NOW, "--json")
    [f] = [f for f in json.loads(out)["findings"] if f["check"] == "unknown_target"]
    assert code == 1 and f["path"] == "$.targets.include.categories[1]" and "'bookz'" in f["message"]
    csv = tmp_path / "cat.csv"
    csv.write_text("kind,name\ncategory,books\ncategory,bookz\n")
    code, out, err = run(capsys, "lint", str(d), "--catalog", str(csv), "--now", NOW, "--json")
    assert not [f for f in json.loads(out)["findings"] if f["check"] == "unknown_target"]


def test_an_exclusive_that_another_exclusive_always_beats_never_wins(tmp_path):
    big = PERCENT.replace("percent: 10", "percent: 30").replace("exclusive: false", "exclusive: true")
    small = PERCENT.replace("exclusive: false", "exclusive: true")
    d = ruleset_dir(tmp_path, rule("big", big), rule("small", small))
    assert ("exclusive_never_wins", ("big", "small")) in checks(d)
    gated = "eligibility:\n  all:\n    - {name: customer_tier, operator: equal_to, value: prime}\n"
    fixed = ruleset_dir(tmp_path / "fixed", rule("big", gated + big), rule("small", small))
    assert not [c for c in checks(fixed) if c[0] == "exclusive_never_wins"]


def test_a_budget_smaller_than_one_use_is_an_error_at_the_budget(tmp_path):
    body = PERCENT.replace("- type: percent_off\n    percent: 10", '- {type: amount_off, scope: per_order, amount: "1000"}')
    d = ruleset_dir(tmp_path, rule("a", "currency: JPY\n" + body + 'limits: {budget: "500"}\n'))
    [f] = [f for f in findings(d) if f.check is Check.BUDGET_BELOW_ONE_USE]
    assert f.severity == "error" and "budget" in line_of(f)
    fixed = ruleset_dir(tmp_path / "fixed", rule("a", "currency: JPY\n" + body + 'limits: {budget: "5000"}\n'))
    assert not [c for c in checks(fixed) if c[0] == "budget_below_one_use"]


# --- suspicious values ------------------------------------------------------------------------------

def test_a_percent_below_one_is_probably_a_fraction(tmp_path):
    d = ruleset_dir(tmp_path, rule("a", PERCENT.replace("percent: 10", 'percent: "0.15"')))
    [f] = [f for f in findings(d) if f.check is Check.PERCENT_BELOW_ONE]
    assert line_of(f).strip() == 'percent: "0.15"' and "write 15" in f.message
    assert "(for 15% write 15)." in f.message
    d = ruleset_dir(tmp_path / "half", rule("a", PERCENT.replace("percent: 10", 'percent: "0.5"')))
    [f] = [f for f in findings(d) if f.check is Check.PERCENT_BELOW_ONE]
    assert "percent 0.5 is 0.5% off" in f.message and "(for 50% write 50)." in f.message
    assert not [c for c in checks(ruleset_dir(tmp_path / "fixed", rule("a", PERCENT))) if c[0] == "percent_below_one"]


def test_an_amount_above_the_minimum_spend_it_is_gated_on(tmp_path):
    body = ('currency: JPY\neligibility:\n  all:\n'
            '    - {name: cart_subtotal, operator: greater_than_or_equal_to, value: "2000"}\n'
            'targets: {include: all}\nbenefits:\n  - type: amount_off\n    scope: per_order\n    amount: "3000"\n'
            'stacking: {priority: 1, exclusive: false}\n')
    d = ruleset_dir(tmp_path, rule("a", body))
    [f] = [f for f in findings(d) if f.check is Check.AMOUNT_ABOVE_MINIMUM]
    assert line_of(f).strip() == 'amount: "3000"'
    fixed = ruleset_dir(tmp_path / "fixed", rule("a", body.replace('"3000"', '"300"')))
    assert not [c for c in checks(fixed) if c[0] == "amount_above_minimum"]


def test_a_window_starting_within_the_lead_time_is_reported(tmp_path):
    soon = 'window: {starts: "2026-12-01T22:00:00Z"}\n'
    d = ruleset_dir(tmp_path, rule("a", soon + PERCENT))
    [f] = [f for f in findings(d) if f.check is Check.STARTS_TOO_SOON]
    assert line_of(f).strip().startswith("window:") and "PT4H" in f.message
    relaxed = ruleset_dir(tmp_path / "fixed", rule("a", soon + PERCENT), settings="lint: {activation_lead_time: PT1H}\n")
    assert not [c for c in checks(relaxed) if c[0] == "starts_too_soon"]


def test_codes_that_differ_only_by_look_alike_characters(tmp_path):
    d = ruleset_dir(tmp_path, rule("a", "code: SAVE10\n" + PERCENT), rule("b", "code: saveIO\n" + PERCENT))
    [f] = [f for f in findings(d) if f.check is Check.LOOKALIKE_CODES]
    assert f.promotions == ("a", "b") and line_of(f).startswith("code:")
    fixed = ruleset_dir(tmp_path / "fixed", rule("a", "code: SAVE10\n" + PERCENT), rule("b", "code: SPRING\n" + PERCENT))
    assert not [c for c in checks(fixed) if c[0] == "lookalike_codes"]


# --- SARIF, JSON, exit codes ------------------------------------------------------------------------

def test_sarif_names_the_tool_its_rules_and_each_finding_on_the_rule_files_line(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run(capsys, "lint", "rules", "--now", NOW, "--format", "sarif")
    sarif = json.loads(out)
    assert code == 1 and sarif["version"] == "2.1.0"
    driver = sarif["runs"][0]["tool"]["driver"]
    assert driver["name"] == "promo lint" and [r["id"] for r in driver["rules"]] == [c.value for c in Check]
    assert all(r["shortDescription"]["text"] and r["help"]["text"] for r in driver["rules"])
    results = sarif["runs"][0]["results"]
    assert len(results) == len(BUNDLED)
    for r in results:
        assert r["level"] in ("error", "warning") and r["message"]["text"]
        where = r["locations"][0]["physicalLocation"]
        uri, line = where["artifactLocation"]["uri"], where["region"]["startLine"]
        assert uri.startswith("rules/") and "\\" not in uri
        text = (ROOT / uri).read_text("utf-8").splitlines()[line - 1]
        field = {"overlap": "exclusive", "window_ended": "ends"}.get(r["ruleId"])
        assert field is None or text.strip().startswith(field), (uri, line, text)


def test_json_prints_findings_and_worst_cases_with_amounts_as_strings(capsys):
    code, out, err = run(capsys, "lint", str(RULES), "--now", NOW, "--json")
    doc = json.loads(out)
    assert set(doc) == {"findings", "worst_case"} and code == 1
    snacks = next(w for w in doc["worst_case"] if w["name"] == "snacks" and w["currency"] == "JPY")
    assert (snacks["percent"], snacks["discount"], snacks["over_threshold"]) == ("75.00", "3000", True)


def test_a_clean_rule_set_exits_0(tmp_path, capsys):
    d = ruleset_dir(tmp_path, rule("a", PERCENT))
    code, out, err = run(capsys, "lint", str(d), "--now", NOW)
    assert code == 0 and "0 errors, 0 warnings" in out and "category books (JPY): 10.00%" in out


@pytest.mark.parametrize("argv, message", [
    (["missing-dir"], "rule directory missing-dir not found"),
    (["rules", "--now", "yesterday"], "--now 'yesterday' is not an ISO 8601 date and time"),
    (["rules", "--now", "2026-12-01T10:00:00"], "has no UTC offset"),
    (["rules", "--catalog", "rules"], "is a directory"),
    (["rules", "--catalog", "nothing-here.json"], "cannot read"),
])
def test_bad_input_is_one_line_and_exit_1(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = run(capsys, "lint", *argv)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("name, content, message", [
    ("empty.json", b"", "is empty"),
    ("broken.json", b"{\"categories\": [", "--catalog"),
    ("wrong.json", b"[\"books\"]", "one JSON object with only the keys"),
    ("none.json", b"{\"categories\": []}", "names no category"),
    ("header.csv", b"type,value\ncategory,books\n", "the first line must be the header kind,name"),
    ("kind.csv", b"kind,name\ncolour,red\n", "(line 2): each line is kind,name"),
    ("cat.txt", b"books\n", "give a .json file"),
    ("huge.json", b"{\"categories\": [" + b"\"x\"," * 3_000_000 + b"\"y\"]}", "is larger than 8 MiB"),
])
def test_a_bad_catalogue_is_refused_with_one_line(tmp_path, name, content, message, capsys):
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run(capsys, "lint", str(RULES), "--catalog", str(path))
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_a_catalogue_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, capsys):
    fifo = tmp_path / "names.json"
    os.mkfifo(fifo)
    code, out, err = run(capsys, "lint", str(RULES), "--catalog", str(fifo))
    assert (code, out) == (1, "") and len(err.strip().splitlines()) == 1
    assert "--catalog" in err and "is not a regular file; give a JSON or CSV file" in err


def test_json_and_sarif_together_are_a_usage_error(capsys):
    code, out, err = run(capsys, "lint", str(RULES), "--json", "--format", "sarif")
    assert code == 2 and "give one of them" in err


def test_an_invalid_rule_set_prints_its_problems_as_validate_does(tmp_path, capsys):
    d = ruleset_dir(tmp_path, rule("a", PERCENT.replace("percent: 10", "percent: 150")))
    code, out, err = run(capsys, "lint", str(d))
    assert code == 1 and err.startswith("rule set has 1 problem") and "a.yaml:" in err and "out of range" in err


# --- pre-commit -------------------------------------------------------------------------------------

def test_the_pre_commit_hooks_parse_and_run_promo_on_the_bundled_rules():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text("utf-8"))
    assert [h["id"] for h in hooks] == ["promo-validate", "promo-lint"]
    expected = {"promo-validate": 0, "promo-lint": 1}   # the bundled rules have worst_case errors (listed above)
    for hook in hooks:
        assert hook["language"] == "python" and hook["pass_filenames"] is False and hook["files"] == r"\.ya?ml$"
        program, command = hook["entry"].split()
        assert program == "promo" and command in ("validate", "lint")
        done = subprocess.run([sys.executable, "-m", "engine.cli", command, *hook["args"]], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == expected[hook["id"]], done.stderr
        assert "Traceback" not in done.stderr
