"""The ledger trusts no trace and no caller: a forged, edited, previewed or stale trace is refused; a
balance exists only when the ledger opened it; ids, clocks and TTLs are checked before any SQL; and in
every refused case every table is exactly as before (a dump compares them), on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from engine import evaluate
from engine.ledger import Ledger, LedgerError, LedgerReason, ReservationRefused

from .ledger_support import NOW, account, cart, fund, priced, rules
from .test_ledger import AT, LATER, dump, ledger  # noqa: F401 - `ledger` is the shared fixture


def doc(trace) -> dict:
    return json.loads(trace.to_json())


def _priced_up(d):
    """The attacker's edit: the line's price raised a hundredfold, everything derived from it too, inputs untouched."""
    line = d["lines"][0]
    for key in ("unit_price", "subtotal", "total"):
        line[key] = str(int(line[key]) * 100)


FORGERIES = {
    "line price raised, inputs untouched": (_priced_up, "$.lines[0].subtotal"),
    "applied amount lowered 500 -> 1": (lambda d: d["applied"][0].update(amount="1"), "$.applied[0].amount"),
    "applied entry deleted": (lambda d: d["applied"].clear(), "$.applied[0]"),
    "applied entry listed twice": (lambda d: d["applied"].append(dict(d["applied"][0])), "$.applied[1]"),
    "currency switched": (lambda d: d.update(currency="USD"), "$.currency"),
    "usage in inputs forged and trace re-stamped": (lambda d: d["inputs"]["usage"].update(
        {"budget-1500": {"total_uses": 0, "customer_uses": 0, "budget_spent": "1400"}}), "$.applied[0].amount"),
    "tender amount edited": (lambda d: d["tenders"]["payment_method"].update(amount="1"),
                             "$.tenders.payment_method.amount"),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_a_trace_that_its_inputs_do_not_give_is_refused_and_holds_nothing(ledger, case):
    tamper, field = FORGERIES[case]
    forged = doc(priced(ledger.ruleset, ["BUDGET"]))
    tamper(forged)
    before = dump(ledger)
    with pytest.raises(LedgerError) as exc:
        ledger.reserve(forged, "o1", "cust-1", ttl=600, now=NOW)
    assert exc.value.reason is LedgerReason.TRACE_MISMATCH and exc.value.field == field
    assert field in str(exc.value) and dump(ledger) == before


def test_a_preview_trace_is_never_reserved(ledger):
    draft = rules({"rules/draft.yaml": b"id: draft\nname: draft\nstatus: draft\ncurrency: JPY\ntargets: {include: all}\n"
                                       b"benefits: [{type: amount_off, scope: per_order, amount: \"100\"}]\n"
                                       b"stacking: {priority: 1, exclusive: false}\n"})
    led = Ledger(ledger.engine, draft, max_clock_skew=None)
    trace = evaluate(draft, cart(), account(), now=NOW, preview=["draft"])
    before = dump(led)
    with pytest.raises(LedgerError) as exc:
        led.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    assert exc.value.reason is LedgerReason.PREVIEW_TRACE and dump(led) == before


@pytest.mark.parametrize("priced_at, reserved_at", [
    ("2025-11-21T10:00:00+09:00", NOW),                 # a year old: the pool promotion's window has long ended
    (NOW, (AT + timedelta(minutes=16)).isoformat()),    # past the 15 minutes a trace is good for
    ((AT + timedelta(minutes=5)).isoformat(), NOW),     # priced in the future
])
def test_a_stale_trace_is_refused(ledger, priced_at, reserved_at):
    trace = priced(ledger.ruleset, ["LIMIT3"], now=priced_at)
    before = dump(ledger)
    with pytest.raises(LedgerError) as exc:
        ledger.reserve(trace, "o1", "cust-1", ttl=600, now=reserved_at)
    assert exc.value.reason is LedgerReason.STALE_TRACE and dump(ledger) == before


def test_a_retry_of_a_reserved_order_is_answered_even_after_the_trace_grew_old(ledger):
    trace = priced(ledger.ruleset, ["LIMIT3"])
    first = ledger.reserve(trace, "o1", "cust-1", ttl=3600, now=NOW)
    assert ledger.reserve(trace, "o1", "cust-1", ttl=3600, now=(AT + timedelta(minutes=30)).isoformat()) == first


def test_a_lot_the_ledger_never_opened_is_refused_however_large(ledger):
    trace = priced(ledger.ruleset, acct=account(lot="1000000000"))
    before = dump(ledger)
    with pytest.raises(ReservationRefused) as exc:
        ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    assert [(r.subject, r.reason) for r in exc.value.refusals] == \
        [("promotional_balance lot-1", LedgerReason.UNKNOWN_BALANCE)]
    assert dump(ledger) == before


def test_a_lot_held_in_another_currency_is_refused(ledger):
    ledger.credit_lot("cust-1", "lot-1", "10", "USD", NOW, granted_at="2026-11-01T00:00:00+09:00")
    trace = priced(ledger.ruleset, acct=account(lot="1000"))
    with pytest.raises(ReservationRefused) as exc:
        ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    assert exc.value.reason is LedgerReason.UNKNOWN_BALANCE and "USD" in str(exc.value)


@pytest.mark.parametrize("claimed", [
    {"lot_expires": "2027-12-31T00:00:00+09:00"},      # a later expiry than the ledger's
    {"lot": "900"},                                     # less than the ledger has: priced with a stale balance
])
def test_a_lot_on_other_terms_than_the_ledgers_is_balance_changed(ledger, claimed):
    fund(ledger, account(lot="1000"))
    trace = priced(ledger.ruleset, acct=account(**{"lot": "1000", **claimed}))
    before = dump(ledger)
    with pytest.raises(ReservationRefused) as exc:
        ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    assert exc.value.reason is LedgerReason.BALANCE_CHANGED and dump(ledger) == before


def test_account_balances_is_the_account_part_a_checkout_prices_with(ledger):
    fund(ledger, account(lot="1000", gift_card="500", points=200))
    part = ledger.account_balances("cust-1", NOW)
    assert set(part) == {"promotional_balance", "gift_card", "points"}
    assert part["gift_card"] == {"amount": "500", "currency": "JPY"}
    assert part["points"] == {"balance": 200, "value": "1", "currency": "JPY", "use": "as_needed"}
    assert [(lot["id"], lot["amount"]) for lot in part["promotional_balance"]] == [("lot-1", "1000")]
    trace = priced(ledger.ruleset, acct=dict(account(), **part))
    ledger.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    left = ledger.account_balances("cust-1", NOW)
    assert "promotional_balance" not in left            # the lot paid ¥1,000 and is empty now (held)
    ledger.release("o1", NOW)
    assert ledger.account_balances("cust-1", NOW) == part


GRANT = (b"id: grant-100\nname: grant-100\nstatus: active\ncurrency: JPY\ntargets: {include: all}\n"
         b"benefits: [{type: grant_promotional_balance, amount: \"100\", expires: {after_days: 30}}]\n"
         b"stacking: {priority: 1, exclusive: false}\n")


def test_a_committed_order_issues_its_grants_as_lots_and_a_cancel_revokes_them(ledger_db):
    ruleset = rules({"rules/grant-100.yaml": GRANT})
    led = Ledger(ledger_db, ruleset, max_clock_skew=None)
    trace = evaluate(ruleset, cart(), account(), now=NOW)
    assert [g.promotion for g in trace.grants] == ["grant-100"]
    led.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    assert "promotional_balance" not in led.account_balances("cust-1", NOW)    # nothing to spend before commit
    led.commit("o1", NOW)
    lots = led.account_balances("cust-1", NOW)["promotional_balance"]
    assert [(lot["amount"], lot["expires_at"][:10]) for lot in lots] == [("100", "2026-12-21")]
    opened = [e for e in led.audit("o1") if e["action"] == "balance_opened"]
    assert len(opened) == 1
    result = led.cancel("o1", LATER)
    assert [(e.kind, e.amount) for e in result.entries if e.kind.startswith("grant")] == [("grant_revoked", "100 JPY")]
    assert "promotional_balance" not in led.account_balances("cust-1", LATER)
    led.close()


def test_two_committed_orders_on_one_lot_write_one_balance_opened(ledger):
    fund(ledger, account(lot="3000"))
    for order in ("o1", "o2"):
        acct = dict(account(), **ledger.account_balances("cust-1", NOW))
        ledger.reserve(priced(ledger.ruleset, acct=acct, quantity=1, price="200"), order, "cust-1", ttl=600, now=NOW)
        ledger.commit(order, NOW)
    opened = [e for e in ledger.audit() if e["action"] == "balance_opened"]
    assert len(opened) == 1 and ledger.balances("cust-1", NOW)[("promotional_balance", "lot-1")] == 1600


@pytest.mark.parametrize("call, reason", [
    (lambda l, t: l.reserve(t, "o" * 129, "c", ttl=600, now=NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve(t, "o\x00", "c", ttl=600, now=NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve(t, 12345, "c", ttl=600, now=NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve(t, "o1", None, ttl=600, now=NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve(t, "o1", "c\n", ttl=600, now=NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve(t, "o1", "c", ttl=1e-9, now=NOW), LedgerReason.BAD_TTL),
    (lambda l, t: l.reserve(t, "o1", "c", ttl=0.0005, now=NOW), LedgerReason.BAD_TTL),
    (lambda l, t: l.reserve(t, "o1", "c", ttl="900", now=NOW), LedgerReason.BAD_TTL),
    (lambda l, t: l.reserve(t, "o1", "c", ttl=float("nan"), now=NOW), LedgerReason.BAD_TTL),
    (lambda l, t: l.reserve(t, "o1", "c", ttl=timedelta(days=8), now=NOW), LedgerReason.BAD_TTL),
    (lambda l, t: l.reserve(t, "o1", "c", ttl=600, now="9999-12-31T23:59:59-12:00"), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve(t, "o1", "c", ttl=600, now="2026-11-21T10:00:00"), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve(t, "o1", "c", ttl=600, now=NOW, codes=["x"] * 21), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve(t, "o1", "c", ttl=600, now=NOW, codes="CODE"), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.reserve([t], "o1", "c", ttl=600, now=NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.resolve_codes(["X" * 16] * 20_000, NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.commit("held", (AT - timedelta(seconds=1)).isoformat()), LedgerReason.CLOCK_SKEW),
    (lambda l, t: l.release("held", (AT - timedelta(days=1)).isoformat()), LedgerReason.CLOCK_SKEW),
    (lambda l, t: l.usage_snapshot("c" * 200, NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.credit_lot("cust-1", "x\n", "100", "JPY", NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.credit_lot("cust-1", "x", "-100", "JPY", NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.credit_lot("cust-1", "x", "100", "EUR", NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.credit_lot("cust-1", "x", 100, "JPY", NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.set_points("cust-1", 2.0, "1", "JPY", NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.set_points("cust-1", 10, "0", "JPY", NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.adjust_gift_card("cust-1", "-1", NOW), LedgerReason.BAD_REQUEST),
    (lambda l, t: l.add_points("cust-1", 5, NOW), LedgerReason.BAD_REQUEST),
])
def test_hostile_calls_are_clear_errors_before_any_sql_and_change_nothing(ledger, call, reason):
    trace = priced(ledger.ruleset, ["LIMIT3"])
    ledger.reserve(trace, "held", "cust-1", ttl=600, now=NOW)
    before = dump(ledger)
    with pytest.raises(LedgerError) as exc:
        call(ledger, trace)
    assert exc.value.reason is reason, str(exc.value)
    assert len(str(exc.value)) < 1000 and dump(ledger) == before


def test_a_write_with_a_clock_far_from_the_databases_is_refused(ledger_db):
    led = Ledger(ledger_db, rules(), max_clock_skew=timedelta(minutes=5))
    real = datetime.now(timezone.utc)
    trace = priced(led.ruleset, ["LIMIT3"], now=real.isoformat())
    led.reserve(trace, "o1", "cust-1", ttl=600, now=real)
    before = dump(led)
    for wrong in (real + timedelta(days=365), real - timedelta(hours=1)):
        with pytest.raises(LedgerError) as exc:
            led.expire(wrong)                 # a year ahead would otherwise expire every checkout in flight
        assert exc.value.reason is LedgerReason.CLOCK_SKEW
    assert dump(led) == before
    assert led.usage_snapshot("cust-1", real + timedelta(days=365))["limited-3"].total_uses == 0   # a read: no write
    assert dump(led) == before and led.reservation("o1").state == "held"
    led.close()


def test_a_missing_database_is_not_created_and_says_how_to_initialise(tmp_path):
    path = tmp_path / "nope.db"
    with pytest.raises(LedgerError) as exc:
        Ledger(str(path), rules())
    assert exc.value.reason is LedgerReason.NOT_INITIALISED and "promo ledger init" in str(exc.value)
    assert not path.exists()


def test_a_compact_trace_is_refused_as_not_checkable_and_holds_nothing(ledger):
    """The compact view leaves out the inputs a trace is re-derived from: it can never be reserved."""
    compact = json.loads(priced(ledger.ruleset, ["BUDGET"]).to_json(view="compact"))
    before = dump(ledger)
    with pytest.raises(LedgerError) as exc:
        ledger.reserve(compact, "o1", "cust-1", ttl=600, now=NOW)
    assert exc.value.reason is LedgerReason.BAD_REQUEST and "compact trace" in str(exc.value)
    assert dump(ledger) == before
