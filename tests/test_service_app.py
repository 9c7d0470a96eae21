"""The request pipeline (engine/service/app.py) in-process: a request that outlives the time limit is
answered 503 `timeout` with a problem body, at the limit, whatever its handler is still doing."""
from __future__ import annotations

import time

import anyio
import httpx

from engine.service import app as service_app, handlers
from engine.service.app import create_app
from engine.service.keys import Scope, create_key
from engine.service.state import Settings
from tests.service_support import account, cart, write_rules


def test_a_request_over_the_time_limit_is_a_503_problem(tmp_path, monkeypatch):
    rules = write_rules(tmp_path / "rules")
    key = create_key(tmp_path / "keys.json", "web", Scope.CHECKOUT)
    application = create_app(Settings(rules=str(rules), keys=str(tmp_path / "keys.json"), timeout_seconds=0.2))
    run = service_app._run

    def hanging(handler, call):   # evaluate hangs; every other endpoint answers as usual
        if handler is handlers.evaluate_cart:
            time.sleep(2)
        return run(handler, call)
    monkeypatch.setattr(service_app, "_run", hanging)

    async def scenario():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            started = time.monotonic()
            response = await client.post("/v1/evaluate", json={"cart": cart(), "account": account()},
                                         headers={"Authorization": f"Bearer {key}"})
            return response, time.monotonic() - started, await client.get("/healthz")
    response, waited, health = anyio.run(scenario)
    assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "timeout" and "retry it with the same order id" in response.json()["detail"]
    assert waited < 1.5
    assert health.status_code == 200       # the service goes on answering
