"""How fast the ledger takes reservations: reservations committed per second, and reserve()'s p99
latency, on SQLite and PostgreSQL with 1, 4 and 16 concurrent workers (threads, each doing reserve then
commit for its own orders). Every order uses the same limited promotion, so all of them contend for one
counter row: the worst case for a hot promotion.

    make bench-ledger            # starts PostgreSQL like `make test` does
    .venv/bin/python bench/ledger_bench.py --seconds 5 --workers 1 4 16

Not a test: figures depend on the machine (and on what else runs on it: the last column, this process's
CPU time per order, is the steadier figure; for PostgreSQL it leaves out the server's). PostgreSQL needs PROMO_TEST_POSTGRES_URL (a database named
promo_bench is created beside it); without it only SQLite is measured.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from engine.ledger import Ledger, make_engine, migrate  # noqa: E402
from engine.ledger.store import TABLES  # noqa: E402
from engine.verify import verified  # noqa: E402
from tests.ledger_support import NOW, priced, rules  # noqa: E402

HOT = (b"id: bench-hot\nname: bench-hot\nstatus: active\ncurrency: JPY\ncode: BENCH\ntargets: {include: all}\n"
       b"benefits: [{type: amount_off, scope: per_order, amount: \"100\"}]\nstacking: {priority: 10, exclusive: false}\n"
       b"limits: {total_uses: 1000000000, uses_per_customer: 1000, budget: \"100000000000\"}\n")


def postgres_bench_url(test_url: str) -> str:
    admin = create_engine(test_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = 'promo_bench'")).scalar():
            conn.execute(text("CREATE DATABASE promo_bench"))
    admin.dispose()
    base, _, query = test_url.partition("?")
    return base.rsplit("/", 1)[0] + "/promo_bench" + (f"?{query}" if query else "")


def fresh(db: str) -> None:
    engine = make_engine(db, create=True)
    migrate(engine)
    with engine.begin() as conn:
        for table in reversed(TABLES):
            conn.execute(table.delete())
    engine.dispose()


def run(db: str, workers: int, seconds: float) -> tuple[float, float, int, float]:
    """Commits per second, reserve()'s p99 (ms), orders, and this process's CPU time per order (ms): on a
    machine shared with other work, the CPU figure moves much less than the rates."""
    fresh(db)
    ruleset = rules({"rules/bench-hot.yaml": HOT})
    ledger = Ledger(db, ruleset, pool_size=workers + 2, max_clock_skew=None)
    trace = priced(ruleset, ["BENCH"]).to_dict()
    now = datetime.fromisoformat(NOW)
    latencies: list[list[float]] = [[] for _ in range(workers)]
    done = [0] * workers
    stop = time.perf_counter() + seconds

    def worker(w: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            order = f"w{w}-{n}"
            at = (now + timedelta(milliseconds=n)).isoformat()
            start = time.perf_counter()
            ledger.reserve(trace, order, f"customer-{w}-{n % 500}", ttl=900, now=at)
            latencies[w].append(time.perf_counter() - start)
            ledger.commit(order, at)
            n += 1
        done[w] = n

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    began, cpu_began = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    report = ledger.promotion_report("bench-hot", now)
    ledger.close()
    total = sum(done)
    assert report["uses"] == total and report["held_uses"] == 0, report   # nothing lost under load
    ordered = sorted(x for per in latencies for x in per)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    return total / elapsed, p99 * 1000, total, cpu / max(total, 1) * 1000


def verify_ms(runs: int = 500) -> float:
    """What trusting no trace costs per reserve: the median time of engine.verify.verified on the bench's trace."""
    ruleset = rules({"rules/bench-hot.yaml": HOT})
    trace = priced(ruleset, ["BENCH"]).to_dict()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        verified(ruleset, trace)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="promo-bench-")   # the SQLite file goes with it at exit
    backends = {"SQLite (WAL, file)": os.path.join(scratch.name, "ledger.db")}
    if os.environ.get("PROMO_TEST_POSTGRES_URL"):
        backends["PostgreSQL 15 (unix socket)"] = postgres_bench_url(os.environ["PROMO_TEST_POSTGRES_URL"])
    else:
        print("PROMO_TEST_POSTGRES_URL not set: measuring SQLite only (make bench-ledger starts PostgreSQL)")
    print(f"reserve() re-derives the trace from its inputs (engine.verify: one evaluate plus a comparison): "
          f"median {verify_ms():.3f} ms per reserve for this one-line cart\n")
    print("| backend | workers | commits/s | reserve p99 (ms) | orders | client CPU ms/order |\n"
          "|---|---:|---:|---:|---:|---:|")
    for name, db in backends.items():
        for workers in args.workers:
            rate, p99, total, cpu = run(db, workers, args.seconds)
            print(f"| {name} | {workers} | {rate:.0f} | {p99:.1f} | {total} | {cpu:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
