"""Faults on PostgreSQL: server backends are terminated during a burst of reservations, and the server is
restarted in the middle of it. Every failure a checkout sees is a LedgerError (unavailable or busy, safe
to retry with the same order id), and after retrying with the same order ids every order is committed
exactly once: nothing lost, nothing doubled (counters equal the sums over committed reservations). A
server that is down is `unavailable`, and the retry holds once.

These tests stop and restart their server, so they run on a private cluster of their own
(tests/private_postgres.py), created for this module and always removed after it: the shared server
every other PostgreSQL test uses (scripts/postgres.sh, PROMO_TEST_POSTGRES_URL) is never touched, and
the module's teardown checks that it was not restarted."""
from __future__ import annotations

import os
import threading
import time

import psycopg
import pytest
from sqlalchemy import text

from engine.ledger import Ledger, LedgerError, LedgerReason, ReservationRefused
from engine.ledger.store import TABLES, make_engine

from .ledger_support import NOW, priced, rules
from .private_postgres import PrivateCluster
from .test_ledger_concurrency import check_counters_match_committed

BIG = (b"id: big-budget\nname: big-budget\nstatus: active\ncurrency: JPY\ncode: BIG\ntargets: {include: all}\n"
       b"benefits: [{type: amount_off, scope: per_order, amount: \"100\"}]\nstacking: {priority: 10, exclusive: false}\n"
       b"limits: {total_uses: 100000, budget: \"100000000\", uses_per_customer: 5}\n")
WORKERS, ORDERS_EACH, RETRIES = 6, 40, 40


def _shared_server_started_at() -> object:
    """When the shared test server (if any) last started; None when there is none to ask."""
    url = os.environ.get("PROMO_TEST_POSTGRES_URL")
    if not url:
        return None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT pg_postmaster_start_time()")).scalar()
    except Exception:  # noqa: BLE001 - not reachable: the other tests report that themselves
        return None
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("PROMO_SKIP_POSTGRES") == "1" and not os.environ.get("CI"):
        pytest.skip("PROMO_SKIP_POSTGRES=1: PostgreSQL fault tests skipped on request")
    shared_before = _shared_server_started_at()
    private = PrivateCluster.create()
    try:
        assert str(private.sockets) not in os.environ.get("PROMO_TEST_POSTGRES_URL", "")
        yield private
    finally:
        private.destroy()
    if shared_before is not None:
        assert _shared_server_started_at() == shared_before, "the shared test server was restarted"


@pytest.fixture
def fault_db(cluster):
    """The private cluster, running, with empty ledger tables; its URL."""
    cluster.start()   # a test that failed half-way may have left it stopped
    engine = make_engine(cluster.url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in TABLES) + " RESTART IDENTITY CASCADE"))
    engine.dispose()
    return cluster.url


@pytest.fixture
def ledger(fault_db):
    led = Ledger(fault_db, rules({"rules/big-budget.yaml": BIG}), pool_size=WORKERS + 2, max_clock_skew=None)
    yield led
    led.close()


def _terminate_backends(cluster: PrivateCluster) -> int:
    """Terminate every other connection to the ledger's database: what an administrator's
    pg_terminate_backend, an OOM kill of a backend or a failover does to a checkout."""
    with psycopg.connect(cluster.conninfo(), autocommit=True, connect_timeout=5) as conn:
        return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())


def test_terminated_backends_and_a_restart_lose_and_double_nothing(cluster, ledger):
    trace = priced(ledger.ruleset, ["BIG"]).to_dict()
    seen: list[str] = []          # what each failed attempt raised
    wrong: list[BaseException] = []

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
    hits = {"terminated": 0, "restarted_mid_burst": False}
    chaos_failed: list[BaseException] = []

    def chaos() -> None:
        """Terminate every backend of the burst again and again, restart the server once in the middle."""
        try:
            for round_ in range(12):
                time.sleep(0.15)
                if any(t.is_alive() for t in threads):
                    hits["terminated"] += _terminate_backends(cluster)
                if round_ == 5:
                    hits["restarted_mid_burst"] = any(t.is_alive() for t in threads)
                    cluster.restart()     # returns once a connection is served again
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            chaos_failed.append(exc)

    for t in threads:
        t.start()
    faults = threading.Thread(target=chaos)
    faults.start()
    faults.join(timeout=300)
    for t in threads:
        t.join(timeout=300)
    print("faults:", hits, "failures seen by checkouts:", {r: seen.count(r) for r in set(seen)})
    assert not faults.is_alive() and chaos_failed == [], chaos_failed
    assert hits["terminated"] > 0 and hits["restarted_mid_burst"], hits   # the faults really hit the burst
    assert not any(t.is_alive() for t in threads)
    assert wrong == [], wrong[:3]
    orders = [f"w{w}-o{i}" for w in range(WORKERS) for i in range(ORDERS_EACH)]
    assert {ledger.reservation(o).state for o in orders} == {"committed"}
    report = ledger.promotion_report("big-budget", NOW)
    assert (report["uses"], report["held_uses"], report["budget_spent"]) == (len(orders), 0, str(100 * len(orders)))
    check_counters_match_committed(ledger)


def test_a_server_that_is_down_is_unavailable_and_a_retry_with_the_same_order_id_holds_once(cluster, ledger):
    trace = priced(ledger.ruleset, ["BIG"]).to_dict()
    before = ledger.promotion_report("big-budget", NOW)
    cluster.stop()
    try:
        with pytest.raises(LedgerError) as exc:
            ledger.reserve(trace, "down-1", "cust-down", ttl=600, now=NOW)
        assert exc.value.reason is LedgerReason.UNAVAILABLE and "retry with the same order id" in str(exc.value)
    finally:
        cluster.start()   # returns once a connection is served
    first = ledger.reserve(trace, "down-1", "cust-down", ttl=600, now=NOW)
    assert ledger.reserve(trace, "down-1", "cust-down", ttl=600, now=NOW) == first
    after = ledger.promotion_report("big-budget", NOW)
    assert after["held_uses"] == before["held_uses"] + 1
