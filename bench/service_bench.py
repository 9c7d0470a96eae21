"""How fast the service answers over loopback: requests per second and p50/p99 latency of
POST /v1/evaluate and POST /v1/checkouts, with 1 and 2 uvicorn workers, a SQLite ledger, driven from the
same machine by a bounded load generator (threads with keep-alive HTTP clients, a fixed number of
requests each).

    make bench-service
    .venv/bin/python bench/service_bench.py --requests 400 --clients 8 --workers 1 2

Not a test: the figures depend on the machine, and the load generator shares its cores with the server.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.ledger import make_engine, migrate  # noqa: E402
from tests.service_support import account, cart, start  # noqa: E402


def drive(server, path: str, body, total: int, clients: int) -> tuple[float, float, float, int]:
    """`total` requests from `clients` threads; (requests/s, p50 ms, p99 ms, non-2xx answers)."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def client(index: int, count: int) -> None:
        mine, bad = [], 0
        with server.client("checkout") as c:
            for i in range(count):
                started = time.perf_counter()
                r = c.post(path, json=body(index, i))
                mine.append(time.perf_counter() - started)
                bad += r.status_code >= 300
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    per = total // clients
    threads = [threading.Thread(target=client, args=(n, per)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000, failures[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per endpoint and worker count")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"{'workers':>7}  {'endpoint':<14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  non-2xx")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "ledger.db")
            engine = make_engine(db, create=True)
            migrate(engine)
            engine.dispose()
            server = start(Path(tmp), ledger=db, extra_args=("--workers", str(workers)))
            try:
                time.sleep(1.0 * workers)   # every worker has loaded the rules
                runs = {
                    "/v1/evaluate": lambda n, i: {"cart": cart(), "account": account(), "codes": ["WELCOME"]},
                    "/v1/checkouts": lambda n, i: {"order_id": f"bench-{workers}-{n}-{i}", "customer_id": f"c-{n}-{i}",
                                                   "cart": cart(), "account": account(), "codes": ["WELCOME"]},
                }
                for path, body in runs.items():
                    drive(server, path, body, min(40, args.requests), args.clients)   # warm-up
                    rate, p50, p99, bad = drive(server, path, body, args.requests, args.clients)
                    print(f"{workers:>7}  {path:<14} {rate:>8.0f} {p50:>8.1f} {p99:>8.1f}  {bad}")
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
