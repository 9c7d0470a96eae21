"""Faults on PostgreSQL: server backends are terminated during a burst of reservations, then the server
is restarted. Every failure a checkout sees is a LedgerError (unavailable or busy, safe to retry with the
same order id), and after retrying with the same order ids every order is committed exactly once:
nothing lost, nothing doubled (counters equal the sums over committed reservations)."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.ledger import Ledger, LedgerError, LedgerReason, ReservationRefused
from engine.ledger.store import TABLES, make_engine

from .conftest import postgres_url
from .ledger_support import NOW, priced, rules
from .test_ledger_concurrency import check_counters_match_committed

ROOT = Path(__file__).resolve().parent.parent
BIG = (b"id: big-budget\nname: big-budget\nstatus: active\ncurrency: JPY\ncode: BIG\ntargets: {include: all}\n"
       b"reward: {type: amount_off, scope: per_order, amount: \"100\"}\nstacking: {priority: 10, exclusive: false}\n"
       b"limits: {total_uses: 100000, budget: \"100000000\", uses_per_customer: 5}\n")
WORKERS, ORDERS_EACH, RETRIES = 6, 40, 40


def _terminate_backends(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return len(conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all())
    finally:
        engine.dispose()


def _restart_server() -> None:
    subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "stop"], check=True, capture_output=True, timeout=120)
    subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "start"], check=True, capture_output=True, timeout=120)


def test_terminated_backends_and_a_restart_lose_and_double_nothing(_postgres_migrated):
    url = _postgres_migrated
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in TABLES) + " RESTART IDENTITY CASCADE"))
    engine.dispose()
    ruleset = rules({"rules/big-budget.yaml": BIG})
    ledger = Ledger(url, ruleset, pool_size=WORKERS + 2, max_clock_skew=None)
    trace = priced(ruleset, ["BIG"]).to_dict()
    seen: list[str] = []          # what each failed attempt raised
    wrong: list[BaseException] = []
    done = threading.Event()

    def place(order_id: str, customer: str) -> None:
        for _ in range(RETRIES):
            try:
                ledger.reserve(trace, order_id, customer, ttl=3600, now=NOW)
                ledger.commit(order_id, NOW)
                return
            except ReservationRefused as exc:   # a refusal is not a fault: the test's limits never bind
                wrong.append(exc)
                return
            except LedgerError as exc:
                seen.append(exc.reason.value)
                if exc.reason not in (LedgerReason.UNAVAILABLE, LedgerReason.BUSY):
                    wrong.append(exc)
                    return
                time.sleep(0.2)
            except BaseException as exc:  # noqa: BLE001 - anything else escaping the ledger is the failure
                wrong.append(exc)
                return
        wrong.append(AssertionError(f"{order_id} did not go through in {RETRIES} attempts"))

    def worker(w: int) -> None:
        for i in range(ORDERS_EACH):
            place(f"w{w}-o{i}", f"c{w}-{i}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()

    hits = {"terminated": 0, "restarted_mid_burst": False}

    def chaos() -> None:
        """Terminate every backend of the burst again and again, restart the server once in the middle."""
        for round_ in range(12):
            time.sleep(0.15)
            if any(t.is_alive() for t in threads):
                hits["terminated"] += _terminate_backends(url)
            if round_ == 5:
                hits["restarted_mid_burst"] = any(t.is_alive() for t in threads)
                _restart_server()
        done.set()
    faults = threading.Thread(target=chaos)
    faults.start()
    faults.join(timeout=300)
    for t in threads:
        t.join(timeout=300)
    print("faults:", hits, "failures seen by checkouts:", {r: seen.count(r) for r in set(seen)})
    assert hits["terminated"] > 0 and hits["restarted_mid_burst"], hits   # the faults really hit the burst
    assert done.is_set() and not any(t.is_alive() for t in threads)
    assert wrong == [], wrong[:3]
    orders = [f"w{w}-o{i}" for w in range(WORKERS) for i in range(ORDERS_EACH)]
    assert {ledger.reservation(o).state for o in orders} == {"committed"}
    report = ledger.promotion_report("big-budget", NOW)
    assert (report["uses"], report["held_uses"], report["budget_spent"]) == (len(orders), 0, str(100 * len(orders)))
    check_counters_match_committed(ledger)
    ledger.close()


def test_a_server_that_is_down_is_unavailable_and_a_retry_with_the_same_order_id_holds_once(_postgres_migrated):
    url = _postgres_migrated
    ruleset = rules({"rules/big-budget.yaml": BIG})
    ledger = Ledger(url, ruleset, max_clock_skew=None)
    trace = priced(ruleset, ["BIG"]).to_dict()
    before = ledger.promotion_report("big-budget", NOW)
    subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "stop"], check=True, capture_output=True, timeout=120)
    try:
        with pytest.raises(LedgerError) as exc:
            ledger.reserve(trace, "down-1", "cust-down", ttl=600, now=NOW)
        assert exc.value.reason is LedgerReason.UNAVAILABLE and "retry with the same order id" in str(exc.value)
    finally:
        subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "start"], check=True, capture_output=True, timeout=120)
    first = ledger.reserve(trace, "down-1", "cust-down", ttl=600, now=NOW)
    assert ledger.reserve(trace, "down-1", "cust-down", ttl=600, now=NOW) == first
    after = ledger.promotion_report("big-budget", NOW)
    assert after["held_uses"] == before["held_uses"] + 1
    ledger.close()
