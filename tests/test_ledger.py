"""The ledger's operations on both backends: reserve holds everything a trace uses or nothing, commit and
release settle it, the TTL frees it, cancel gives back what the promotion and the refund say, every
change is in the audit log, and bad requests change nothing."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from engine import Reason, evaluate
from engine.ledger import (CODE_REFUSED_MESSAGE, Ledger, LedgerError, LedgerReason, ReservationRefused,
                           customer_message)
from engine.ledger.store import TABLES, reading

from .ledger_support import NOW, account, cart, fund, priced, rules

AT = datetime.fromisoformat(NOW)
LATER = (AT + timedelta(minutes=5)).isoformat()


@pytest.fixture
def ledger(ledger_db):
    led = Ledger(ledger_db, rules(), actor="test", max_clock_skew=None)
    yield led
    led.close()


def dump(ledger: Ledger) -> dict:
    with reading(ledger.engine) as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t))) for t in TABLES}


def counters(ledger: Ledger, pid: str) -> dict:
    return ledger.promotion_report(pid, NOW)


def test_reserve_holds_a_use_and_the_budget_and_commit_turns_them_into_uses(ledger):
    trace = priced(ledger.ruleset, ["BUDGET"])
    held = ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    assert held.state == "held" and counters(ledger, "budget-1500")["budget_held"] == "500"
    assert ledger.commit("o1", LATER).state == "committed"
    report = counters(ledger, "budget-1500")
    assert (report["uses"], report["held_uses"], report["budget_spent"], report["budget_held"]) == (1, 0, "500", "0")


def test_retrying_the_same_reserve_returns_the_same_reservation_and_holds_once(ledger):
    trace = priced(ledger.ruleset, ["LIMIT3"])
    first = ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    again = ledger.reserve(trace.to_dict(), "o1", "cust-1", ttl=600, now=LATER)
    assert again == first and counters(ledger, "limited-3")["held_uses"] == 1


def test_the_same_order_id_with_another_trace_is_refused(ledger):
    ledger.reserve(priced(ledger.ruleset, ["LIMIT3"]), "o1", "cust-1", ttl=600, now=NOW)
    before = dump(ledger)
    with pytest.raises(LedgerError) as exc:
        ledger.reserve(priced(ledger.ruleset, ["BUDGET"]), "o1", "cust-1", ttl=600, now=NOW)
    assert exc.value.reason is LedgerReason.ORDER_REUSED and dump(ledger) == before


def test_a_reservation_that_does_not_fit_holds_nothing_and_names_each_part(ledger):
    ruleset = ledger.ruleset
    for i in range(3):
        ledger.reserve(priced(ruleset, ["BUDGET"]), f"b{i}", f"c{i}", ttl=600, now=NOW)
        ledger.reserve(priced(ruleset, ["LIMIT3"]), f"l{i}", f"c{i}", ttl=600, now=NOW)
    before = dump(ledger)
    with pytest.raises(ReservationRefused) as exc:
        ledger.reserve(priced(ruleset, ["BUDGET", "LIMIT3"]), "late", "cust-9", ttl=600, now=NOW)
    reasons = {(r.subject, r.reason) for r in exc.value.refusals}
    assert reasons == {("budget-1500", LedgerReason.BUDGET_EXHAUSTED), ("limited-3", LedgerReason.USAGE_LIMIT_REACHED)}
    assert "budget-1500" in str(exc.value) and dump(ledger) == before


def test_usage_snapshot_lets_the_trace_say_usage_limit_reached_before_checkout(ledger):
    ruleset = ledger.ruleset
    for i in range(3):
        ledger.reserve(priced(ruleset, ["LIMIT3"]), f"l{i}", f"c{i}", ttl=600, now=NOW)
    usage = ledger.usage_snapshot("cust-9", NOW)
    assert usage["limited-3"].total_uses == 3
    trace = priced(ruleset, ["LIMIT3"], usage=usage)
    assert [n.reason for n in trace.not_applied if n.promotion == "limited-3"] == [Reason.USAGE_LIMIT_REACHED]


def test_per_customer_limit_counts_each_customer_apart(ledger):
    ruleset = ledger.ruleset
    trace = priced(ruleset, ["KEPT"])
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    ledger.reserve(trace, "o2", "cust-2", ttl=600, now=NOW)
    with pytest.raises(ReservationRefused) as exc:
        ledger.reserve(trace, "o3", "cust-1", ttl=600, now=NOW)
    assert exc.value.reason is LedgerReason.USAGE_LIMIT_REACHED and "per customer" in str(exc.value)
    assert ledger.usage_snapshot("cust-1", NOW)["kept-use"].customer_uses == 1


def test_release_gives_everything_back_and_releasing_twice_is_harmless(ledger):
    trace = priced(ledger.ruleset, ["LIMIT3"], acct=fund(ledger, account(lot="1000")))
    empty = ledger.usage_snapshot("cust-1", NOW)
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    assert ledger.balances("cust-1", NOW)[("promotional_balance", "lot-1")] == 0
    assert ledger.release("o1", NOW).state == "released"
    assert ledger.release("o1", NOW).state == "released"
    assert ledger.usage_snapshot("cust-1", NOW) == empty
    assert ledger.balances("cust-1", NOW)[("promotional_balance", "lot-1")] == Decimal(1000)


def test_the_ttl_frees_a_reservation_and_it_can_no_longer_be_committed(ledger):
    trace = priced(ledger.ruleset, ["LIMIT3"])
    ledger.reserve(trace, "o1", "cust-1", ttl=60, now=NOW)
    at_expiry = (AT + timedelta(seconds=60)).isoformat()
    assert ledger.usage_snapshot("cust-1", at_expiry)["limited-3"].total_uses == 0
    with pytest.raises(LedgerError) as exc:
        ledger.commit("o1", at_expiry)
    assert exc.value.reason is LedgerReason.ORDER_EXPIRED
    assert ledger.reservation("o1").state == "held"      # reads and refused writes change nothing...
    assert ledger.expire(at_expiry) == ("o1",) and ledger.reservation("o1").state == "expired"   # ...a sweep does


def test_expire_sweeps_every_reservation_whose_time_is_up(ledger):
    trace = priced(ledger.ruleset, ["LIMIT3"])
    ledger.reserve(trace, "o1", "cust-1", ttl=60, now=NOW)
    ledger.reserve(trace, "o2", "cust-2", ttl=600, now=NOW)
    assert ledger.expire((AT + timedelta(seconds=61)).isoformat()) == ("o1",)
    assert counters(ledger, "limited-3")["held_uses"] == 1


def test_the_same_lot_cannot_pay_for_two_orders(ledger):
    trace = priced(ledger.ruleset, acct=fund(ledger, account(lot="1000")))
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    with pytest.raises(ReservationRefused) as exc:
        ledger.reserve(trace, "o2", "cust-1", ttl=600, now=NOW)
    refusal = exc.value.refusals[0]
    assert (refusal.kind, refusal.subject, refusal.reason) == \
        ("balance", "promotional_balance lot-1", LedgerReason.BALANCE_CHANGED)


def test_a_trace_priced_with_what_the_ledger_holds_is_accepted(ledger):
    ledger.reserve(priced(ledger.ruleset, acct=fund(ledger, account(lot="1000")), quantity=1, price="600"), "o1", "cust-1",
                   ttl=600, now=NOW)
    ledger.commit("o1", NOW)
    left = ledger.balances("cust-1", NOW)[("promotional_balance", "lot-1")]
    assert left == Decimal(0)   # ¥600 item + ¥500 shipping: the lot pays ¥1,000 of ¥1,100
    trace = priced(ledger.ruleset, acct=fund(ledger, account(lot=f"{left:f}", gift_card="3000")))
    assert ledger.reserve(trace, "o2", "cust-1", ttl=600, now=NOW).state == "held"


def test_cancel_gives_back_budget_balances_and_usage_when_the_promotion_says_so(ledger):
    trace = priced(ledger.ruleset, ["BUDGET", "ONCE", "KEPT"], acct=fund(ledger, account(lot="1000", gift_card="500", points=200)))
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    ledger.commit("o1", NOW)
    result = ledger.cancel("o1", LATER)
    given = {(e.kind, e.subject): e.amount for e in result.entries}
    assert given[("budget", "budget-1500")] == "500 JPY"
    assert given[("usage", "once-each")] == "1" and ("usage", "kept-use") not in given
    assert given[("promotional_balance", "lot-1")] == "1000 JPY" and given[("points", "")] == "200"
    assert ledger.usage_snapshot("cust-1", LATER)["once-each"].customer_uses == 0
    assert ledger.usage_snapshot("cust-1", LATER)["kept-use"].customer_uses == 1
    assert ledger.balances("cust-1", NOW) == {("promotional_balance", "lot-1"): Decimal(1000),
                                          ("gift_card", ""): Decimal(500), ("points", ""): 200}
    assert ledger.reservation("o1").state == "cancelled"


def test_cancelling_twice_is_harmless(ledger):
    trace = priced(ledger.ruleset, ["BUDGET"], acct=fund(ledger, account(gift_card="500")))
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    ledger.commit("o1", NOW)
    first = ledger.cancel("o1", LATER)
    after = dump(ledger)
    assert ledger.cancel("o1", LATER) == first
    assert {k: v for k, v in dump(ledger).items() if k != "promo_audit_log"} == \
           {k: v for k, v in after.items() if k != "promo_audit_log"}
    assert ledger.balances("cust-1", NOW)[("gift_card", "")] == Decimal(500)


def test_expired_lot_balance_is_forfeited_not_given_back(ledger):
    trace = priced(ledger.ruleset, acct=fund(ledger, account(lot="1000", lot_expires="2026-11-25T00:00:00+09:00")))
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    ledger.commit("o1", NOW)
    result = ledger.cancel("o1", "2026-11-26T00:00:00+09:00")
    assert [(e.kind, e.amount) for e in result.entries if e.subject == "lot-1"] == [("forfeited", "1000 JPY")]
    assert ledger.balances("cust-1", NOW)[("promotional_balance", "lot-1")] == 0


def test_a_partial_return_gives_back_the_budget_the_kept_order_no_longer_uses(ledger):
    trace = priced(ledger.ruleset, ["MINSPEND"], quantity=3)     # ¥3,000 of books: ¥600 off
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    ledger.commit("o1", NOW)
    assert counters(ledger, "min-spend")["budget_spent"] == "600"
    ledger.cancel("o1", LATER, returned={"L1": 1}, return_id="first")   # ¥2,000 kept: the minimum is not met
    assert counters(ledger, "min-spend")["budget_spent"] == "0"
    before = dump(ledger)
    assert ledger.cancel("o1", LATER, returned={"L1": 1}, return_id="first").cancelled is False   # a retry
    assert dump(ledger) == before
    with pytest.raises(LedgerError) as exc:                      # the same key for other lines is refused
        ledger.cancel("o1", LATER, returned={"L1": 2}, return_id="first")
    assert exc.value.reason is LedgerReason.BAD_RETURN and dump(ledger) == before
    ledger.cancel("o1", LATER, returned={"L1": 1}, return_id="second")
    final = ledger.cancel("o1", LATER)
    assert final.cancelled and ledger.reservation("o1").state == "cancelled"
    assert counters(ledger, "min-spend")["budget_spent"] == "0"


def test_single_use_codes_resolve_reserve_and_read_the_same_to_customers_when_refused(ledger):
    codes = ledger.generate_codes("pool-300", 2, NOW, prefix="SPRING")
    stored = repr(dump(ledger))
    assert not any(code in stored or code.replace("-", "") in stored for code in codes)   # only hashes are kept
    resolved = ledger.resolve_codes([codes[0]], NOW)
    trace = priced(ledger.ruleset, resolved.codes)
    assert [a.promotion for a in trace.applied] == ["pool-300"]
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW, codes=resolved.pool_codes)
    again = ledger.resolve_codes([codes[0], "SPRING-AAAA-BBBB-CCCC-DDDD"], NOW)
    assert [c.status.value for c in again.checks] == ["code_already_used", "unknown_code"]
    assert [customer_message(c) for c in again.checks] == [CODE_REFUSED_MESSAGE] * 2
    over = ledger.resolve_codes([codes[1]], "2026-12-02T00:00:00+09:00")
    assert over.checks[0].status.value == "expired" and customer_message(over.checks[0]) == CODE_REFUSED_MESSAGE
    late = evaluate(ledger.ruleset, cart(), account(), codes=over.codes, now="2026-12-02T00:00:00+09:00")
    assert [n.reason for n in late.not_applied] == [Reason.EXPIRED]   # the merchant's detail stays in the trace
    assert customer_message(late.not_applied[0]) == CODE_REFUSED_MESSAGE


def test_a_pool_promotion_needs_its_code_at_reserve_and_the_token_alone_gets_nothing(ledger):
    ledger.generate_codes("pool-300", 1, NOW)
    trace = priced(ledger.ruleset, ["POOL:POOL-300"])
    assert ledger.resolve_codes(["POOL:POOL-300"], NOW).codes == ()
    with pytest.raises(ReservationRefused) as exc:
        ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    assert exc.value.reason is LedgerReason.CODE_NOT_PRESENTED
    assert customer_message(exc.value.refusals[0]) == CODE_REFUSED_MESSAGE


def test_a_cancelled_single_use_code_can_be_used_again_when_usage_is_returned(ledger):
    code = ledger.generate_codes("pool-300", 1, NOW)[0]
    resolved = ledger.resolve_codes([code], NOW)
    ledger.reserve(priced(ledger.ruleset, resolved.codes), "o1", "cust-1", ttl=600, now=NOW, codes=[code])
    ledger.commit("o1", NOW)
    assert ledger.promotion_report("pool-300", NOW)["codes"]["redeemed"] == 1
    ledger.cancel("o1", LATER)
    assert ledger.resolve_codes([code], LATER).checks[0].status.value == "pool"


def test_every_operation_appends_to_the_audit_log(ledger):
    trace = priced(ledger.ruleset, ["LIMIT3"], acct=fund(ledger, account(gift_card="500")))
    seen = 0
    steps = [lambda: ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW),
             lambda: ledger.commit("o1", NOW), lambda: ledger.cancel("o1", LATER),
             lambda: ledger.reserve(trace, "o2", "cust-1", ttl=600, now=LATER),
             lambda: ledger.release("o2", LATER), lambda: ledger.generate_codes("pool-300", 1, NOW)]
    for step in steps:
        step()
        log = ledger.audit()
        assert len(log) > seen and all(e["actor"] == "test" and e["at"] for e in log[seen:])
        seen = len(log)
    assert {e["action"] for e in ledger.audit("o1")} >= {"reserve", "commit", "committed", "give_back", "cancel"}


@pytest.mark.parametrize("case", ["unknown order", "commit released", "commit expired", "other rule set",
                                  "zero ttl", "negative ttl", "infinite ttl", "cancel held", "cancel released",
                                  "release committed", "bad return", "return not a mapping",
                                  "partial return without id", "order id of another customer",
                                  "amount finer than the currency"])
def test_bad_requests_are_clear_errors_and_change_nothing(ledger, case):
    trace = priced(ledger.ruleset, ["LIMIT3"])
    ledger.reserve(trace, "held", "cust-1", ttl=60, now=NOW)
    ledger.reserve(trace, "released", "cust-1", ttl=600, now=NOW)
    ledger.release("released", NOW)
    ledger.reserve(trace, "live", "cust-3", ttl=600, now=NOW)
    ledger.reserve(trace, "done", "cust-2", ttl=600, now=NOW)
    ledger.commit("done", NOW)
    ledger.expire((AT + timedelta(seconds=60)).isoformat())   # "held" expires: sweeps happen before the dump
    other = rules({"rules/extra.yaml": b"id: extra\nname: extra\nstatus: draft\ntargets: {include: all}\n"
                                       b"benefits: [{type: free_shipping}]\nstacking: {priority: 1, exclusive: false}\n"})
    later = (AT + timedelta(seconds=61)).isoformat()
    action, reason = {
        "unknown order": (lambda: ledger.commit("nope", later), LedgerReason.UNKNOWN_ORDER),
        "commit released": (lambda: ledger.commit("released", later), LedgerReason.ORDER_RELEASED),
        "commit expired": (lambda: ledger.commit("held", later), LedgerReason.ORDER_EXPIRED),
        "other rule set": (lambda: ledger.reserve(priced(other, ["LIMIT3"]), "new", "c", ttl=60, now=later),
                           LedgerReason.WRONG_RULESET),
        "zero ttl": (lambda: ledger.reserve(trace, "new", "c", ttl=0, now=later), LedgerReason.BAD_TTL),
        "negative ttl": (lambda: ledger.reserve(trace, "new", "c", ttl=timedelta(seconds=-5), now=later),
                         LedgerReason.BAD_TTL),
        "infinite ttl": (lambda: ledger.reserve(trace, "new", "c", ttl=float("inf"), now=later),
                         LedgerReason.BAD_TTL),
        "cancel held": (lambda: ledger.cancel("live", later), LedgerReason.ORDER_NOT_COMMITTED),
        "cancel released": (lambda: ledger.cancel("released", later), LedgerReason.ORDER_NOT_COMMITTED),
        "return not a mapping": (lambda: ledger.cancel("done", later, returned=5, return_id="r"),
                                 LedgerReason.BAD_RETURN),
        "partial return without id": (lambda: ledger.cancel("done", later, returned={"L1": 1}),
                                      LedgerReason.BAD_RETURN),
        "order id of another customer": (lambda: ledger.reserve(trace, "live", "cust-9", ttl=600, now=later),
                                         LedgerReason.ORDER_REUSED),
        "amount finer than the currency": (lambda: ledger.reserve(finer(trace), "new", "c", ttl=60, now=later),
                                           LedgerReason.TRACE_MISMATCH),
        "release committed": (lambda: ledger.release("done", later), LedgerReason.ORDER_COMMITTED),
        "bad return": (lambda: ledger.cancel("done", later, returned={"L1": 9}, return_id="r"),
                       LedgerReason.BAD_RETURN),
    }[case]
    before = dump(ledger)
    with pytest.raises(LedgerError) as exc:
        action()
    assert exc.value.reason is reason and str(exc.value)
    assert dump(ledger) == before


def finer(trace):
    """The trace's JSON form with its first discount written finer than JPY allows (schema-valid text)."""
    doc = json.loads(trace.to_json())
    doc["applied"][0]["amount"] = doc["applied"][0]["amount"] + ".5"
    return doc


def test_an_expired_hold_never_blocks_and_the_balances_show_it_freed(ledger):
    trace = priced(ledger.ruleset, ["ONCE"], acct=fund(ledger, account(lot="1000")))
    for i in range(3):   # other abandoned checkouts, due before ours
        ledger.reserve(priced(ledger.ruleset, ["LIMIT3"]), f"a{i}", f"other-{i}", ttl=60, now=NOW)
    ledger.reserve(trace, "zzz", "cust-1", ttl=60, now=NOW)
    later = (AT + timedelta(seconds=120)).isoformat()
    assert ledger.balances("cust-1", later)[("promotional_balance", "lot-1")] == Decimal(1000)
    assert ledger.reserve(trace, "again", "cust-1", ttl=60, now=later).state == "held"
    with pytest.raises(LedgerError) as exc:
        ledger.commit("zzz", later)
    assert exc.value.reason is LedgerReason.ORDER_EXPIRED


SEVERAL = {"rules/bundle.yaml": (
    b"id: bundle\nname: bundle\nstatus: active\ncurrency: JPY\ncode: BUNDLE\ntargets: {include: all}\n"
    b"benefits: [{type: percent_off, percent: 10}, {type: free_shipping}, "
    b"{type: grant_promotional_balance, amount: \"100\", expires: {after_days: 30}}]\n"
    b"stacking: {priority: 10, exclusive: false}\nlimits: {total_uses: 2, uses_per_customer: 1, budget: \"5000\"}\n")}


def test_a_promotion_with_several_benefits_is_one_use_and_its_budget_holds_their_sum(ledger_db):
    led = Ledger(ledger_db, rules(SEVERAL), actor="test", max_clock_skew=None)
    try:
        trace = priced(led.ruleset, ["BUNDLE"])
        given = [(a.stage, a.benefit, a.amount) for a in trace.applied if a.promotion == "bundle"]
        assert given == [("item", 0, Decimal(300)), ("shipping", 1, Decimal(500))]
        assert [(g.promotion, g.amount) for g in trace.grants] == [("bundle", Decimal(100))]
        led.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
        report = led.promotion_report("bundle", NOW)
        assert (report["held_uses"], report["budget_held"]) == (1, "900")   # 300 + 500 + the 100 granted
        led.commit("o1", LATER)
        report = led.promotion_report("bundle", LATER)
        assert (report["uses"], report["budget_spent"]) == (1, "900")
        # the customer's one use is spent: the same customer's next order no longer gets it
        again = priced(led.ruleset, ["BUNDLE"], usage=led.usage_snapshot("cust-1", LATER, ["bundle"]))
        assert [n.reason for n in again.not_applied if n.promotion == "bundle"] == [Reason.USAGE_LIMIT_REACHED]
        cancelled = led.cancel("o1", LATER)
        back = {(e.kind, e.subject): e.amount for e in cancelled.entries}
        assert back[("budget", "bundle")] == "900 JPY" and led.promotion_report("bundle", LATER)["budget_spent"] == "0"
    finally:
        led.close()
