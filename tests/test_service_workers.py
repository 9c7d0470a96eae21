"""`promo serve --workers 2` over HTTP (engine/service/shared.py): a reload answered by one worker is
served by both from the next request on, and /metrics adds up the requests of both, whichever answers
the scrape. Which worker answers a request is the kernel's choice, so each test sends requests from
several connections at once until the request log shows that both workers answered some."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import httpx
import pytest

from engine.ledger import make_engine, migrate
from tests.service_support import Server, account, cart, start

WORKERS = 2
BATCH = 8          # requests sent at once, each on its own connection
MAX_REQUESTS = 400


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("workers-tmp")   # the server's TMPDIR: where its private directory goes


@pytest.fixture(scope="module")
def server(tmp_path_factory, private_tmp):
    tmp = tmp_path_factory.mktemp("workers")
    db = str(tmp / "ledger.db")
    engine = make_engine(db, create=True)
    migrate(engine)
    engine.dispose()
    srv = start(tmp, ledger=db, extra_args=("--workers", str(WORKERS)), env={"TMPDIR": str(private_tmp)})
    # /healthz answers as soon as one worker is up. A worker that starts after a reload starts on the
    # publication and never counts as having followed it, so every test begins with every worker up.
    _spread(srv, "warm-up", lambda c, h: c.get("/v1/ruleset", headers=h))
    yield srv
    srv.stop()


def _log(server: Server) -> dict[str, dict[str, Any]]:
    return {entry["request_id"]: entry for entry in (json.loads(line) for line in server.log.read_text().splitlines()
                                                     if line.startswith("{"))}


def _pids(server: Server, request_ids: list[str]) -> set[int]:
    """The workers that answered these requests (their log lines are written just after the response)."""
    deadline = time.monotonic() + 10
    while True:
        logged = _log(server)
        if all(r in logged for r in request_ids) or time.monotonic() > deadline:
            return {logged[r]["pid"] for r in request_ids if r in logged}
        time.sleep(0.05)


def _spread(server: Server, tag: str, send: Callable[[httpx.Client, dict[str, str]], httpx.Response]
            ) -> list[httpx.Response]:
    """Send requests, each on a new connection, BATCH at a time, until both workers have answered some."""
    responses: list[httpx.Response] = []
    ids: list[str] = []

    def one(i: int) -> httpx.Response:
        with server.client("admin") as c:
            return send(c, {"X-Request-Id": f"{tag}-{i}"})

    with ThreadPoolExecutor(BATCH) as pool:
        while len(responses) < MAX_REQUESTS:
            batch = range(len(responses), len(responses) + BATCH)
            responses.extend(pool.map(one, batch))
            ids.extend(f"{tag}-{i}" for i in batch)
            if len(_pids(server, ids)) == WORKERS:
                return responses
    pytest.fail(f"{MAX_REQUESTS} requests were all answered by one worker")


def _edit_rules(server: Server, name: str) -> None:
    (server.rules / f"{name}.yaml").write_bytes((server.rules / "welcome-100.yaml").read_bytes()
                                                .replace(b"welcome-100", name.encode())
                                                .replace(b"WELCOME", name.upper().encode()))


def test_a_reload_answered_by_one_worker_is_served_by_every_worker(server):
    with server.client("admin") as c:
        before = c.get("/v1/ruleset").json()["version"]
        _edit_rules(server, "extra-one")
        reloaded = c.post("/v1/admin/reload")
    assert reloaded.status_code == 200, reloaded.text
    body = reloaded.json()
    assert body["previous_version"] == before != body["version"]
    assert body["changed"] is True and body["workers"] == WORKERS and body["generation"] >= 2
    infos = _spread(server, "after-reload", lambda c, h: c.get("/v1/ruleset", headers=h))
    assert {r.json()["version"] for r in infos} == {body["version"]}
    assert len({r.json()["loaded_at"] for r in infos}) == 1          # when it was published, on every worker
    traces = _spread(server, "after-reload-evaluate",
                     lambda c, h: c.post("/v1/evaluate", headers=h, json={"cart": cart(), "account": account(),
                                                                            "codes": ["EXTRA-ONE"]}))
    assert {r.json()["ruleset_version"] for r in traces} == {body["version"]}
    assert all("extra-one" in {a["promotion"] for a in r.json()["applied"]} for r in traces)
    with server.client("admin") as c:
        assert _counter(c, "promo_reloads_total", outcome="followed") >= WORKERS - 1


def test_a_refused_reload_changes_no_worker(server):
    with server.client("admin") as c:
        before = c.get("/v1/ruleset").json()["version"]
        (server.rules / "broken.yaml").write_bytes(b"id: broken\nname: broken\nstatus: active\n")
        try:
            assert c.post("/v1/admin/reload").status_code == 422
        finally:
            (server.rules / "broken.yaml").unlink()
    infos = _spread(server, "after-refused", lambda c, h: c.get("/v1/ruleset", headers=h))
    assert {r.json()["version"] for r in infos} == {before}


def test_every_request_started_after_a_reload_answered_is_priced_with_it(server):
    """Clients evaluate on both workers while an admin reloads: nothing is lost, every response names one
    version, and every request that started after the reload's answer names the new one."""
    seen: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def evaluate_until_stopped() -> None:
        while not stop.is_set():
            with server.client("checkout") as c:      # a new connection each time: either worker
                started = time.monotonic()
                r = c.post("/v1/evaluate", json={"cart": cart(), "account": account()})
                seen.append((started, r.status_code, r.json().get("ruleset_version")))

    clients = [threading.Thread(target=evaluate_until_stopped) for _ in range(4)]
    for t in clients:
        t.start()
    time.sleep(0.5)
    with server.client("admin") as c:
        first = c.get("/v1/ruleset").json()["version"]
        _edit_rules(server, "extra-two")
        reloaded = c.post("/v1/admin/reload").json()
        answered = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for t in clients:
        t.join()
    assert {status for _, status, _ in seen} == {200}
    assert {version for _, _, version in seen} <= {first, reloaded["version"]}
    after = [version for started, _, version in seen if started > answered]
    assert after and set(after) == {reloaded["version"]}


def _counter(c: httpx.Client, name: str, **labels: str) -> float:
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "} "
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_the_requests_of_every_worker(server):
    labels = dict(method="GET", route="/v1/promotions/{promotion_id}", status="404")
    with server.client("admin") as c:
        requests_before = _counter(c, "promo_requests_total", **labels)
        refusals_before = _counter(c, "promo_refusals_total", reason="not_found")
    sent = _spread(server, "metrics", lambda c, h: c.get("/v1/promotions/no-such-promotion", headers=h))
    assert {r.status_code for r in sent} == {404}
    deadline = time.monotonic() + 5       # a request is counted just after its response is sent
    while True:
        with server.client("admin") as c:   # whichever worker answers the scrape
            requests = _counter(c, "promo_requests_total", **labels)
            refusals = _counter(c, "promo_refusals_total", reason="not_found")
        if (requests >= requests_before + len(sent) and refusals >= refusals_before + len(sent)) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert requests == requests_before + len(sent)
    assert refusals == refusals_before + len(sent)


def test_the_private_directory_holds_the_counts_and_is_removed_at_exit(tmp_path):
    private = tmp_path / "tmp"
    private.mkdir()
    srv = start(tmp_path / "serve", extra_args=("--workers", str(WORKERS)), env={"TMPDIR": str(private)})
    try:
        with srv.client("admin") as c:
            assert c.get("/v1/ruleset").status_code == 200
        [directory] = private.glob("promo-serve-*")
        assert (directory / "rules" / "current.json").is_file()
        assert (directory / "metrics").is_dir()
    finally:
        srv.stop()
    assert srv.process.returncode == 0
    assert list(private.iterdir()) == []
