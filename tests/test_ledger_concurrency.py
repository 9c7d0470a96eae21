"""Races, on both backends: 32 threads and 4 processes reserve (and commit) at once a single-use code,
the last use of a promotion limited to 3, the last ¥500 of a budget, and the same promotional balance
lot. Exactly the allowed number win, every loser gets the named reason, and afterwards every counter,
budget and balance equals the sum of the committed reservations. A worker killed between reserve and
commit leaves a reservation that the TTL frees."""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from engine.ledger import Ledger, LedgerReason, ReservationRefused
from engine.ledger.store import balances, reading, promotion_counters, reservation_items, reservations

from .ledger_support import NOW, account, fund, priced, rules

THREADS = 32
PROCESSES = 4
AT = datetime.fromisoformat(NOW)


def setup_races(ledger: Ledger) -> dict[str, dict]:
    """Each race: the trace every contender reserves, the codes it presents, how many may win, and the
    reason every loser must get. The limit and budget races start with all but the last use taken."""
    ruleset = ledger.ruleset
    code = ledger.generate_codes("pool-300", 1, NOW)[0]
    limit, budget = priced(ruleset, ["LIMIT3"]), priced(ruleset, ["BUDGET"])
    for i in range(2):
        for name, trace in (("limit", limit), ("budget", budget)):
            ledger.reserve(trace, f"{name}-before-{i}", f"early-{i}", ttl=600, now=NOW)
            ledger.commit(f"{name}-before-{i}", NOW)
    return {
        "code": {"trace": priced(ruleset, ledger.resolve_codes([code], NOW).codes), "codes": [code], "wins": 1,
                 "reason": LedgerReason.CODE_ALREADY_USED},
        "limit": {"trace": limit, "codes": [], "wins": 1, "reason": LedgerReason.USAGE_LIMIT_REACHED},
        "budget": {"trace": budget, "codes": [], "wins": 1, "reason": LedgerReason.BUDGET_EXHAUSTED},
        "lot": {"trace": priced(ruleset, acct=fund(ledger, account("lot-owner", lot="1000"))), "codes": [], "wins": 1,
                "reason": LedgerReason.BALANCE_CHANGED},
    }


def contend(ledger: Ledger, trace: dict, order_id: str, codes: list[str]) -> str:
    """Reserve and, if that worked, commit. 'won' or the refusal's reason."""
    try:
        ledger.reserve(trace, order_id, f"customer-{order_id}", ttl=600, now=NOW, codes=codes)
    except ReservationRefused as exc:
        return exc.reason.value
    ledger.commit(order_id, NOW)
    return "won"


def process_worker(db: str, tasks: list, barrier, results) -> None:
    ledger = Ledger(db, rules(), max_clock_skew=None)
    barrier.wait(timeout=120)       # every process is connected before the first reserve
    results.put([(race, contend(ledger, trace, order_id, codes)) for race, trace, order_id, codes in tasks])
    ledger.close()


def check_outcome(ledger: Ledger, races: dict, outcomes: dict[str, list[str]]) -> None:
    for name, race in races.items():
        got = outcomes[name]
        assert got.count("won") == race["wins"], (name, got)
        assert set(got) - {"won"} == {race["reason"].value}, (name, got)
    check_counters_match_committed(ledger)
    assert ledger.promotion_report("pool-300", NOW)["codes"] == {"unused": 0, "held": 0, "redeemed": 1}
    assert ledger.promotion_report("limited-3", NOW)["uses"] == 3
    assert ledger.promotion_report("budget-1500", NOW)["budget_spent"] == "1500"
    assert ledger.balances("lot-owner", NOW)[("promotional_balance", "lot-1")] == 0


def check_counters_match_committed(ledger: Ledger) -> None:
    """Counters, budgets and balances equal the sums over committed reservations; nothing is left held."""
    opened = {tuple(json.loads(e["subject"])): e["delta"]["amount"] for e in ledger.audit()
              if e["action"] == "balance_opened"}
    with reading(ledger.engine) as conn:
        committed = conn.execute(select(reservation_items).join(reservations).where(
            reservations.c.state == "committed")).all()
        uses: dict[str, int] = {}
        spent: dict[str, int] = {}
        taken: dict[tuple, int] = {}
        for item in committed:
            subject = tuple(json.loads(item.subject))
            if item.kind == "use":
                uses[subject[0]] = uses.get(subject[0], 0) + item.uses
            if item.kind == "budget":
                spent[subject[0]] = spent.get(subject[0], 0) + item.amount
            if item.kind in ("promotional_balance", "gift_card", "points"):
                taken[subject] = taken.get(subject, 0) + item.amount
        for row in conn.execute(select(promotion_counters)):
            assert (row.uses, row.spent, row.held_uses, row.held_spent) == \
                (uses.get(row.promotion_id, 0), spent.get(row.promotion_id, 0), 0, 0), row
        for row in conn.execute(select(balances)):
            key = (row.account_id, row.kind, row.lot_id)
            assert row.held == 0 and row.amount == opened[key] - taken.get(key, 0), row


@pytest.fixture
def ledger(ledger_db):
    led = Ledger(ledger_db, rules(), pool_size=THREADS, max_clock_skew=None)
    yield led
    led.close()


def test_32_threads_race_and_exactly_the_allowed_number_win(ledger):
    races = setup_races(ledger)
    outcomes = {}
    with ThreadPoolExecutor(THREADS) as pool:
        for name, race in races.items():
            trace = race["trace"].to_dict()
            outcomes[name] = list(pool.map(lambda i: contend(ledger, trace, f"{name}-{i}", race["codes"]),
                                           range(THREADS)))
    check_outcome(ledger, races, outcomes)


def test_4_processes_race_and_exactly_the_allowed_number_win(ledger, ledger_db):
    races = setup_races(ledger)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    workers = [ctx.Process(target=process_worker, args=(
        ledger_db, [(name, race["trace"].to_dict(), f"{name}-p{n}", race["codes"]) for name, race in races.items()],
        barrier, results)) for n in range(PROCESSES)]
    for w in workers:
        w.start()
    collected = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    outcomes = {name: [outcome for batch in collected for race, outcome in batch if race == name] for name in races}
    check_outcome(ledger, races, outcomes)


def reserve_then_die(db: str, trace: dict, code: str) -> None:
    Ledger(db, rules(), max_clock_skew=None).reserve(trace, "doomed", "customer-doomed", ttl=60, now=NOW, codes=[code])
    os._exit(1)                     # the worker dies between reserve and commit


def test_a_worker_killed_between_reserve_and_commit_leaves_a_hold_the_ttl_frees(ledger, ledger_db):
    code = ledger.generate_codes("pool-300", 1, NOW)[0]
    trace = priced(ledger.ruleset, ledger.resolve_codes([code], NOW).codes)
    worker = multiprocessing.get_context("spawn").Process(target=reserve_then_die,
                                                          args=(ledger_db, trace.to_dict(), code))
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 1
    assert ledger.reservation("doomed").state == "held"
    with pytest.raises(ReservationRefused) as exc:
        ledger.reserve(trace, "rescue", "customer-rescue", ttl=60, now=NOW, codes=[code])
    assert exc.value.reason is LedgerReason.CODE_ALREADY_USED
    after_ttl = (AT + timedelta(seconds=60)).isoformat()
    assert ledger.reserve(trace, "rescue", "customer-rescue", ttl=60, now=after_ttl, codes=[code]).state == "held"
    assert ledger.reservation("doomed").state == "expired"
    ledger.commit("rescue", after_ttl)
    check_counters_match_committed(ledger)
