"""Reloading the rules of a running service (engine/service/state.py), over HTTP: a bad rule set is
refused and the old one keeps serving; a good one is served at once, and an order priced before the
reload can still be cancelled."""
from __future__ import annotations

import threading

import pytest

from engine.ledger import make_engine, migrate
from tests.service_support import RULES, account, cart, start

BROKEN = b"id: broken\nname: broken\nstatus: active\n"   # no targets, benefits or stacking


@pytest.fixture
def server(tmp_path):
    db = str(tmp_path / "ledger.db")
    engine = make_engine(db, create=True)
    migrate(engine)
    engine.dispose()
    srv = start(tmp_path, ledger=db)
    yield srv
    srv.stop()


def _version(c) -> str:
    return c.get("/v1/ruleset").json()["version"]


def test_a_bad_rule_set_is_refused_and_the_old_one_keeps_serving(server):
    with server.client("admin") as c:
        before = _version(c)
        (server.rules / "broken.yaml").write_bytes(BROKEN)
        refused = c.post("/v1/admin/reload")
        assert refused.status_code == 422
        body = refused.json()
        assert body["reason"] == "rules_refused"
        assert {p["file"] for p in body["problems"]} == {"broken.yaml"}
        assert _version(c) == before
        assert c.post("/v1/evaluate", json={"cart": cart(), "account": account()}).status_code == 200
        assert 'promo_reloads_total{outcome="refused"} 1.0' in c.get("/metrics").text


def test_a_good_rule_set_is_served_after_reload_and_old_orders_still_cancel(server):
    with server.client("checkout") as c:
        order = {"order_id": "order-before-reload", "customer_id": "cust-1", "cart": cart(), "account": account(),
                 "codes": ["WELCOME"]}
        assert c.post("/v1/checkouts", json=order).status_code == 201
        assert c.post("/v1/checkouts/order-before-reload/commit").status_code == 200
    (server.rules / "welcome-100.yaml").write_bytes(
        (server.rules / "welcome-100.yaml").read_bytes().replace(b"\"100\"", b"\"150\""))
    with server.client("admin") as c:
        reloaded = c.post("/v1/admin/reload").json()
        assert reloaded["changed"] is True and reloaded["version"] == _version(c) != reloaded["previous_version"]
        assert 'promo_reloads_total{outcome="loaded"} 1.0' in c.get("/metrics").text
        cancelled = c.post("/v1/checkouts/order-before-reload/cancel", json={})
        assert cancelled.status_code == 200, cancelled.text
        trace = c.post("/v1/evaluate", json={"cart": cart(), "account": account(), "codes": ["WELCOME"]}).json()
    assert trace["applied"][0]["amount"] == "150"


def test_a_reload_while_clients_evaluate_loses_no_request(server):
    versions: set[str] = set()
    failures: list[int] = []

    def evaluate_many() -> None:
        with server.client("checkout") as c:
            for _ in range(15):
                r = c.post("/v1/evaluate", json={"cart": cart(), "account": account()})
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    versions.add(r.json()["ruleset_version"])

    clients = [threading.Thread(target=evaluate_many) for _ in range(4)]
    for t in clients:
        t.start()
    with server.client("admin") as c:
        first = _version(c)
        (server.rules / "extra.yaml").write_bytes((server.rules / "welcome-100.yaml").read_bytes()
                                                  .replace(b"welcome-100", b"extra").replace(b"WELCOME", b"EXTRA"))
        assert c.post("/v1/admin/reload").status_code == 200
        second = _version(c)
    for t in clients:
        t.join()
    assert failures == []
    assert versions <= {first, second}


def test_an_order_priced_before_a_restart_still_cancels_and_its_retry_is_the_same(tmp_path, server):
    order = {"order_id": "order-before-restart", "customer_id": "cust-1", "cart": cart(), "account": account(),
             "codes": ["WELCOME"]}
    with server.client("checkout") as c:
        first = c.post("/v1/checkouts", json=order)
        assert first.status_code == 201
        assert c.post("/v1/checkouts/order-before-restart/commit").status_code == 200
    server.stop()
    edited = dict(RULES, **{"welcome-100.yaml": RULES["welcome-100.yaml"].replace(b"\"100\"", b"\"150\"")})
    again = start(tmp_path / "after", ledger=str(tmp_path / "ledger.db"), files=edited)
    try:
        with again.client("checkout") as c:
            assert _version(c) != first.json()["reservation"]["ruleset_version"]
            retried = c.post("/v1/checkouts", json=order)   # priced with rules this process never loaded
            assert retried.status_code == 201, retried.text
            assert retried.json()["reservation"]["trace_hash"] == first.json()["reservation"]["trace_hash"]
            cancelled = c.post("/v1/checkouts/order-before-restart/cancel", json={})
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["cancelled"] is True
    finally:
        again.stop()
