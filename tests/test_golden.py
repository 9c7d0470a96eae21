"""Golden cases: tests/golden/<case>/ holds case.json, cart.json, account.json, optionally its own
rules/, and expected.json, the trace QA reviewed. A case may also list returns in case.json
(`"refunds": [{"name": "n", "returned": {"L1": 1}, "now": "..."}]`); each one's refund is compared
with refund-<name>.json. `make golden` rewrites expected.json and the refund files; the diff is then
read line by line before it is committed."""
from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from engine import evaluate, load_ruleset, read_json
from engine.reasons import TenderReason
from engine.refund import refund
from engine.benefits import KINDS
from engine.reasons import Reason
from engine.schemas import validator

from .invariants import check_invariants

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CASES = sorted(p for p in GOLDEN.iterdir() if (p / "case.json").exists())


def _rules(case: Path):
    return load_ruleset(case / "rules" if (case / "rules").is_dir() else ROOT / "rules")


def run_case(case: Path):
    spec = json.loads((case / "case.json").read_text("utf-8"))
    return evaluate(_rules(case), read_json(case / "cart.json"), read_json(case / "account.json"),
                    codes=spec.get("codes", []), now=spec["now"], usage=spec.get("usage"),
                    preview=spec.get("preview", []))


def _compare(case: Path, name: str, produced: str, update_golden: bool) -> None:
    expected_path = case / name
    if update_golden:
        expected_path.write_text(produced, "utf-8")
        return
    assert expected_path.exists(), f"{case.name} has no {name}; run `make golden` and review it"
    expected = expected_path.read_text("utf-8")
    if produced != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), produced.splitlines(True),
                                            name, "produced", n=2))
        pytest.fail(f"{case.name}: output differs from {name}\n{diff}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(case: Path, update_golden: bool) -> None:
    trace = run_case(case)
    produced = trace.to_json()
    errors = [e.message for e in validator("trace").iter_errors(json.loads(produced))]
    assert not errors, errors
    check_invariants(trace)
    _compare(case, "expected.json", produced, update_golden)
    for spec in json.loads((case / "case.json").read_text("utf-8")).get("refunds", []):
        result = refund(_rules(case), json.loads(produced), spec["returned"], spec["now"])
        assert result.refund + result.kept == result.paid
        _compare(case, f"refund-{spec['name']}.json", result.to_json(), update_golden)


def _all_expected() -> list[dict]:
    return [json.loads((c / "expected.json").read_text("utf-8")) for c in CASES if (c / "expected.json").exists()]


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
    assert any(r["cancelled"] for r in refunds) and any(not r["cancelled"] for r in refunds)
    assert any(r["clawback"] != "0" and r["lost_promotions"] for r in refunds)
    assert any(r["revoked_grants"] for r in refunds)
    parts = [p for r in refunds for p in r["parts"] if p["kind"] == "promotional_balance"]
    assert any(p["forfeited"] != "0" for p in parts) and any(p["amount"] != "0" for p in parts)


def test_golden_cases_cover_jpy_usd_and_kwd() -> None:
    assert {"JPY", "USD", "KWD"} <= {t["currency"] for t in _all_expected()}
