"""The ledger keeps every rule set it priced orders with (engine/ledger/archive.py), on both backends: an
order priced before a reload or a restart is cancelled and returned by a ledger that was never given
the old rule set, each version is stored once, and a version the ledger never priced with is refused."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from engine.ledger import Ledger, LedgerError, LedgerReason, ReservationRefused
from engine.ledger.archive import pack, unpack
from engine.ledger.store import reading, ruleset_versions

from .ledger_support import FILES, NOW, _promotion, account, fund, priced, rules

LATER = (datetime.fromisoformat(NOW) + timedelta(minutes=5)).isoformat()
# The same rule set after a deploy: the budget promotion now takes 400 off instead of 500.
EDITED = {"rules/budget-1500.yaml": _promotion("budget-1500", "BUDGET", "400", "{budget: \"1500\"}")}


def open_ledger(db: str, ruleset, **options) -> Ledger:
    return Ledger(db, ruleset, actor="test", max_clock_skew=None, **options)


def stored(ledger: Ledger) -> int:
    with reading(ledger.engine) as conn:
        return conn.execute(select(func.count()).select_from(ruleset_versions)).scalar()


def test_an_order_priced_before_a_restart_cancels_with_no_history(ledger_db):
    before = open_ledger(ledger_db, rules())
    trace = priced(before.ruleset, ["BUDGET", "ONCE"], acct=fund(before, account(gift_card="500")))
    before.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    before.commit("o1", NOW)
    before.close()

    after = open_ledger(ledger_db, rules(EDITED))            # a new process with the edited rules, no history=
    assert after.ruleset.version != trace.ruleset_version
    result = after.cancel("o1", LATER)
    given = {(e.kind, e.subject): e.amount for e in result.entries}
    assert given[("budget", "budget-1500")] == "500 JPY"     # what the order was priced with, not today's 400
    assert given[("usage", "once-each")] == "1"
    assert after.reservation("o1").state == "cancelled"
    after.close()


def test_a_partial_return_after_a_reload_is_priced_with_the_old_rules(ledger_db):
    before = open_ledger(ledger_db, rules())
    trace = priced(before.ruleset, ["MINSPEND"], quantity=3)    # ¥3,000: ¥600 off with a ¥3,000 minimum
    before.reserve(trace, "o1", "cust-1", ttl=600, now=NOW)
    before.commit("o1", NOW)
    lowered = {"rules/min-spend.yaml": FILES["rules/min-spend.yaml"].replace(b'"3000"', b'"1000"')}
    after = open_ledger(ledger_db, rules(lowered))
    after.cancel("o1", LATER, returned={"L1": 1}, return_id="r1")   # ¥2,000 kept: below the old minimum
    assert after.promotion_report("min-spend", LATER)["budget_spent"] == "0"
    before.close()
    after.close()


def test_each_version_is_stored_once_by_the_first_reserve_that_prices_with_it(ledger_db):
    first = open_ledger(ledger_db, rules())
    assert stored(first) == 0
    for i in range(3):
        first.reserve(priced(first.ruleset, cart_id=f"c{i}"), f"o{i}", "cust-1", ttl=600, now=NOW)
    assert stored(first) == 1
    other_process = open_ledger(ledger_db, rules())           # knows nothing of what the first one stored
    other_process.reserve(priced(other_process.ruleset, cart_id="c9"), "o9", "cust-2", ttl=600, now=NOW)
    assert stored(first) == 1
    edited = open_ledger(ledger_db, rules(EDITED))
    edited.reserve(priced(edited.ruleset, cart_id="c10"), "o10", "cust-3", ttl=600, now=NOW)
    assert [v for v, _ in edited.ruleset_versions()] == sorted([first.ruleset.version, edited.ruleset.version])
    for led in (first, other_process, edited):
        led.close()


def test_a_refused_reservation_stores_no_rule_set(ledger_db):
    led = open_ledger(ledger_db, rules())
    for i in range(3):
        led.reserve(priced(led.ruleset, ["LIMIT3"], cart_id=f"c{i}"), f"o{i}", f"cust-{i}", ttl=600, now=NOW)
    led.close()
    fresh = open_ledger(ledger_db, rules(EDITED))
    trace = priced(fresh.ruleset, ["LIMIT3"], cart_id="c4")   # priced without the usage: the limit is reached
    with pytest.raises(ReservationRefused):
        fresh.reserve(trace, "o4", "cust-4", ttl=600, now=NOW)
    assert [v for v, _ in fresh.ruleset_versions()] == [rules().version]
    fresh.close()


def test_a_version_the_ledger_never_priced_with_is_wrong_ruleset(ledger_db):
    led = open_ledger(ledger_db, rules())
    with pytest.raises(LedgerError) as exc:
        led.ruleset_for("sha256:" + "0" * 64, "o1")
    assert exc.value.reason is LedgerReason.WRONG_RULESET
    with pytest.raises(LedgerError):
        led.ruleset_for(["not", "a", "version"])
    led.close()


def test_a_rebuilt_rule_set_is_compiled_once_and_equals_the_original(ledger_db):
    original = rules()
    led = open_ledger(ledger_db, original)
    led.reserve(priced(original), "o1", "cust-1", ttl=600, now=NOW)
    led.close()
    later = open_ledger(ledger_db, rules(EDITED))
    rebuilt = later.ruleset_for(original.version)
    assert rebuilt is later.ruleset_for(original.version)
    assert rebuilt.version == original.version and rebuilt.promotions.keys() == original.promotions.keys()
    assert priced(rebuilt).to_json() == priced(original).to_json()
    later.close()


def test_the_archive_keeps_the_bytes_exactly():
    files = {"_settings.yaml": b"currencies: [JPY]\n", "x.yaml": "name: \u3042 # comment\n".encode() + b"\xff"}
    assert unpack(pack(files)) == files


@pytest.mark.parametrize("version", ["sha256:" + "0" * 10_000, "sha256:\0", "", "sha256:abc\n", 12, None, 1.5])
def test_a_hostile_version_is_wrong_ruleset_and_reads_nothing_it_should_not(ledger_db, version):
    led = open_ledger(ledger_db, rules())
    led.reserve(priced(led.ruleset), "o1", "cust-1", ttl=600, now=NOW)
    before = stored(led)
    with pytest.raises(LedgerError) as exc:
        led.ruleset_for(version, "o1")
    assert exc.value.reason is LedgerReason.WRONG_RULESET and "\0" not in str(exc.value)
    with pytest.raises(LedgerError):   # the stored version with a trailing newline is another version
        led.ruleset_for(led.ruleset.version + "\n", "o1")
    assert stored(led) == before
    led.close()


@pytest.mark.parametrize("damage", [b"", b"not zlib", b"\x78\x9c" + b"\0" * 40])
def test_a_damaged_archive_row_is_wrong_ruleset_not_a_crash(ledger_db, damage):
    from sqlalchemy import update
    original = rules()
    led = open_ledger(ledger_db, original)
    led.reserve(priced(original), "o1", "cust-1", ttl=600, now=NOW)
    with led.engine.begin() as conn:
        conn.execute(update(ruleset_versions).values(files=damage))
    led.close()
    later = open_ledger(ledger_db, rules(EDITED))
    with pytest.raises(LedgerError) as exc:
        later.ruleset_for(original.version, "o1")
    assert exc.value.reason is LedgerReason.WRONG_RULESET
    later.close()
