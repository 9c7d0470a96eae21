"""Golden cases (tests/golden_tool.py says what a case holds): each trace is checked against the trace
schema and the money invariants, then compared byte for byte with what QA reviewed. A failing case
says first what changed, in a reviewer's words (amounts and reasons by promotion, totals), then shows
the diff. `make golden` rewrites them and says what changed; the diff is then read before it is committed."""
from __future__ import annotations

import difflib
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from engine.benefits import KINDS
from engine.reasons import Reason, TenderReason
from engine.schemas import validator

from .golden_tool import CASES, ROOT, changes, produce, run_case
from .invariants import check_invariants


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(case: Path) -> None:
    trace = run_case(case)
    errors = [e.message for e in validator("trace").iter_errors(json.loads(trace.to_json()))]
    assert not errors, errors
    check_invariants(trace)
    for name, produced in produce(case, trace).items():
        path = case / name
        if not path.exists():
            pytest.fail(f"{case.name} has no {name}: write it with `python -m tests.golden_tool --update "
                        f"{case.name}` and review it", pytrace=False)
        expected = path.read_text("utf-8")
        if produced != expected:
            # What changed first, in a reviewer's words, then the diff; no pages of test source.
            summary = "\n".join(f"  - {line}" for line in changes(expected, produced))
            diff = "".join(difflib.unified_diff(expected.splitlines(True), produced.splitlines(True), name,
                                                "produced", n=2))
            pytest.fail(f"{case.name}/{name} differs from what the engine gives now:\n{summary}\n\n{diff}\n"
                        f"If the change is meant: `make golden`, then review `git diff tests/golden`.", pytrace=False)
        if name.startswith("refund-"):
            result = json.loads(produced)
            assert Decimal(result["refund"]) + Decimal(result["kept"]) == Decimal(result["paid"])


SHOP_CASES = [c for c in CASES if "promotions" in json.loads((c / "case.json").read_text("utf-8"))]
UNRELATED = """id: garden-gnomes-20-off
name: 20% off garden gnomes
status: active
currency: JPY
targets:
  include:
    categories: [garden-gnomes]
benefits:
  - type: percent_off
    percent: "20"
stacking:
  priority: 10
  exclusive: false
"""


def test_a_new_unrelated_rule_file_rewrites_no_case_that_runs_on_the_shops_rules(tmp_path: Path) -> None:
    assert len(SHOP_CASES) >= 4
    shop = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", shop)
    (shop / "garden-gnomes-20-off.yaml").write_text(UNRELATED)
    for case in SHOP_CASES:
        assert produce(case, shop=shop) == {name: (case / name).read_text("utf-8") for name in produce(case)}, case.name


def test_a_case_naming_its_promotions_still_fails_when_one_of_them_changes(tmp_path: Path) -> None:
    shop = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", shop)
    path = shop / "kw-national-day-5-off.yaml"
    path.write_text(path.read_text("utf-8").replace('amount: "5.000"', 'amount: "4.000"'))
    [case] = [c for c in SHOP_CASES if c.name == "g-bundled-kwd-min-spend-met-exactly"]
    [(name, produced)] = produce(case, shop=shop).items()
    summary = changes((case / name).read_text("utf-8"), produced)
    assert "kw-national-day-5-off: takes 4.000 instead of 5.000" in summary


def _all_expected() -> list[dict]:
    """Every case's whole trace (a case naming its promotions keeps only theirs in expected.json)."""
    return [run_case(c).to_dict() for c in CASES]


def test_golden_cases_cover_every_reason_code_and_reward_type() -> None:
    traces = _all_expected()
    assert len(traces) >= 40
    reasons = {n["reason"] for t in traces for n in t["not_applied"]}
    reasons |= {r for t in traces for r in t["out_of_scope"]}
    reasons |= {c["status"] for t in traces for c in t["codes"]}
    assert {r.value for r in Reason} - reasons == set()
    rewards = {a["reward"] for t in traces for a in t["applied"]}
    rewards |= {"grant_promotional_balance" for t in traces if t["grants"]}   # grants are listed apart
    all_rewards = set(KINDS)
    assert all_rewards - rewards == set()


def test_golden_cases_cover_every_tender_reason_and_refund_outcome() -> None:
    traces = _all_expected()
    reasons = {n["reason"] for t in traces for n in t["tenders"]["not_used"]}
    assert {r.value for r in TenderReason} - reasons == set()
    kinds = {u["kind"] for t in traces for u in t["tenders"]["used"]}
    assert kinds == {"promotional_balance", "gift_card", "points"}
    assert any(t["grants"] for t in traces)
    assert any(u.get("shipping") for t in traces for u in t["tenders"]["used"])
    refunds = [json.loads(p.read_text("utf-8")) for c in CASES for p in sorted(c.glob("refund-*.json"))]
    assert refunds
    assert any(r["cancelled"] for r in refunds) and any(not r["cancelled"] for r in refunds)
    assert any(r["clawback"] != "0" and r["lost_promotions"] for r in refunds)
    assert any(r["revoked_grants"] for r in refunds)
    parts = [p for r in refunds for p in r["parts"] if p["kind"] == "promotional_balance"]
    assert any(p["forfeited"] != "0" for p in parts) and any(p["amount"] != "0" for p in parts)


def test_golden_cases_cover_jpy_usd_and_kwd() -> None:
    assert {"JPY", "USD", "KWD"} <= {t["currency"] for t in _all_expected()}
