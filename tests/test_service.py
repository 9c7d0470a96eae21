"""The service over HTTP: `promo serve` runs in a subprocess on a loopback port, with a ledger on SQLite
and on PostgreSQL, and every test talks to it with an HTTP client."""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timezone

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import text

from engine import evaluate, load_ruleset
from engine.ledger import CODE_REFUSED_MESSAGE, Ledger, make_engine, migrate
from engine.ledger.store import TABLES
from engine.schemas import schema
from engine.service.bodies import MAX_BODY_BYTES
from engine.service.openapi import project_schema
from engine.service.keys import revoke_key
from tests.service_support import account, cart, start

NOW = "2026-11-21T10:00:00+09:00"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "sqlite":
        db = str(tmp / "ledger.db")
        engine = make_engine(db, create=True)
        migrate(engine)
    else:
        db = request.getfixturevalue("_postgres_migrated")
        engine = make_engine(db)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE " + ", ".join(t.name for t in TABLES) + " RESTART IDENTITY CASCADE"))
    engine.dispose()
    srv = start(tmp, ledger=db)
    srv.db = db
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ledger(server):
    """The same ledger, opened by the test to generate single-use codes."""
    book = Ledger(server.db, load_ruleset(server.rules), max_clock_skew=None)
    yield book
    book.close()


def _checkout(order_id, customer_id="cust-1", codes=(), **cart_args):
    return {"order_id": order_id, "customer_id": customer_id, "cart": cart(**cart_args), "account": account(),
            "codes": list(codes)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


# --- keys and scopes --------------------------------------------------------------------------------

def test_health_and_readiness_need_no_key(server):
    with server.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"rules": "ok", "ledger": "ok"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer pe_not-a-key"}, {"Authorization": "Basic eDp5"}])
def test_a_request_without_a_known_key_is_401(server, headers):
    with server.client(None) as c:
        response = c.get("/v1/ruleset", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["reason"] == "unauthorized"


@pytest.mark.parametrize("method, path", [("GET", "/v1/promotions"), ("GET", "/v1/promotions/welcome-100"),
                                          ("POST", "/v1/admin/reload"), ("GET", "/metrics"),
                                          ("GET", "/v1/checkouts/any-order")])
def test_a_checkout_key_gets_403_from_admin_endpoints(server, method, path):
    with server.client("checkout") as c:
        response = c.request(method, path)
    assert response.status_code == 403
    assert response.json()["reason"] == "forbidden"


@pytest.mark.parametrize("option", [{"now": NOW}, {"preview": ["draft-50"]}])
def test_a_checkout_key_never_chooses_now_or_previews(server, option):
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", json={"cart": cart(), "account": account(), **option})
    assert response.status_code == 403
    assert response.json()["problems"][0]["path"] == f"$.{next(iter(option))}"


def test_a_revoked_key_is_refused_without_a_restart(server):
    from engine.service.keys import create_key, Scope
    key = create_key(server.keys, "short-lived", Scope.CHECKOUT)
    with server.client(key) as c:
        assert c.get("/v1/ruleset").status_code == 200
        revoke_key(server.keys, "short-lived")
        assert c.get("/v1/ruleset").status_code == 401


# --- evaluate ---------------------------------------------------------------------------------------

def test_the_merchant_view_is_exactly_the_trace(server):
    with server.client("admin") as c:
        response = c.post("/v1/evaluate", json={"cart": cart(), "account": account(), "codes": ["WELCOME"], "now": NOW})
    assert response.status_code == 200
    expected = evaluate(load_ruleset(server.rules), cart(), account(), codes=["WELCOME"], now=NOW)
    assert response.json() == json.loads(expected.to_json())
    Draft202012Validator(schema("trace")).validate(response.json())


def test_the_compact_view_is_the_trace_without_inputs_and_with_only_what_matters_to_the_customer(server):
    with server.client("admin") as c:
        response = c.post("/v1/evaluate", json={"cart": cart(), "account": account(), "codes": ["WELCOME"], "now": NOW,
                                                "view": "compact"})
    assert response.status_code == 200
    expected = evaluate(load_ruleset(server.rules), cart(), account(), codes=["WELCOME"], now=NOW)
    assert response.json() == json.loads(expected.to_json(view="compact"))
    assert "inputs" not in response.json() and response.json()["view"] == "compact"
    Draft202012Validator(schema("trace")).validate(response.json())


@pytest.mark.parametrize("view", ["COMPACT", "compact\n", " compact", "compact\x00", 1, ["compact"], None,
                                  "c" * 100_000])
def test_a_view_that_is_not_one_of_ours_is_refused_at_its_path(server, view):
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", json={"cart": cart(), "account": account(), "view": view})
    assert response.status_code == 400
    assert [p["path"] for p in response.json()["problems"]] == ["$.view"]


def test_a_checkout_key_evaluates_at_the_servers_time(server):
    before = datetime.now(timezone.utc)
    with server.client("checkout") as c:
        trace = c.post("/v1/evaluate", json={"cart": cart(), "account": account()}).json()
    assert before <= datetime.fromisoformat(trace["now"]) <= datetime.now(timezone.utc)


def test_an_admin_now_without_an_offset_is_refused_with_its_path(server):
    with server.client("admin") as c:
        response = c.post("/v1/evaluate", json={"cart": cart(), "account": account(), "now": "2026-11-21T10:00:00"})
    assert response.status_code == 400
    assert response.json()["problems"][0]["path"] == "$.now"


def test_an_admin_previews_a_draft(server):
    with server.client("admin") as c:
        trace = c.post("/v1/evaluate", json={"cart": cart(), "account": account(), "codes": ["DRAFT"],
                                             "preview": ["draft-50"]}).json()
    assert [a["promotion"] for a in trace["applied"]] == ["draft-50"]


def test_the_customer_view_shows_names_formatted_amounts_and_no_account(server, ledger):
    [pool_code] = ledger.generate_codes("pool-300", 1, _now())
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", headers={"Accept-Language": "ja-JP, en;q=0.5"},
                          json={"cart": cart(), "account": account(), "view": "customer",
                                "codes": ["WELCOME", pool_code, "NO-SUCH-CODE", "GONE"]})
    view = response.json()
    Draft202012Validator(project_schema("customer_trace")).validate(view)
    assert response.headers["content-language"] == "ja-JP"
    assert view["totals"]["total"]["display"] == "￥3,100"          # 3000 + 500 shipping - 100 - 300
    assert [p["name"] for p in view["promotions"]] == ["pool-300 name", "welcome-100 name"]   # priority, then id
    assert {p.get("code") for p in view["promotions"]} == {"WELCOME", pool_code}
    assert {c["code"]: c["accepted"] for c in view["codes"]} == \
        {"WELCOME": True, pool_code: True, "NO-SUCH-CODE": False, "GONE": False}
    refused = {c["message"] for c in view["codes"] if not c["accepted"]}
    assert refused == {"このコードはご利用いただけません。"}                  # CODE_REFUSED_MESSAGE, in Japanese
    assert [p["message"] for p in view["promotions"]] == ["pool-300 name", "welcome-100 name"]
    text_ = response.text
    assert "POOL:" not in text_ and "acct-1" not in text_ and "inputs" not in view
    assert "spend-600" not in text_                                   # an automatic promotion's reason stays internal


def test_an_evaluate_with_a_customer_id_reads_the_ledgers_usage(server):
    with server.client("checkout") as c:
        bought = c.post("/v1/checkouts", json=_checkout("order-usage", "cust-usage", ["WELCOME"]))
        assert bought.status_code == 201, bought.text
        assert c.post("/v1/checkouts/order-usage/commit").status_code == 200
        body = {"cart": cart(), "account": account(), "codes": ["WELCOME"]}
        theirs = c.post("/v1/evaluate", json=dict(body, customer_id="cust-usage")).json()
        someone_else = c.post("/v1/evaluate", json=dict(body, customer_id="cust-usage-other")).json()
        anonymous = c.post("/v1/evaluate", json=body).json()
        view = c.post("/v1/evaluate", json=dict(body, customer_id="cust-usage", view="customer")).json()
    used_up = {n["promotion"]: n["reason"] for n in theirs["not_applied"]}
    assert used_up["welcome-100"] == "usage_limit_reached"
    assert "welcome-100" not in {a["promotion"] for a in theirs["applied"]}
    assert theirs["inputs"]["usage"]["welcome-100"]["customer_uses"] == 1
    assert "welcome-100" in {a["promotion"] for a in someone_else["applied"]}
    assert "welcome-100" in {a["promotion"] for a in anonymous["applied"]}        # no customer: no usage, as before
    assert {c["code"]: c["accepted"] for c in view["codes"]} == {"WELCOME": False}


def test_a_customer_id_is_checked_like_a_checkouts(server):
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", json={"cart": cart(), "account": account(), "customer_id": " spaced "})
    assert response.status_code == 400


def test_a_near_miss_hint_reaches_the_customer_in_their_language(server):
    body = {"cart": cart(price="1500"), "account": account(), "view": "customer"}
    with server.client("checkout") as c:
        view = c.post("/v1/evaluate", json=body).json()
        japanese = c.post("/v1/evaluate", json=body, headers={"Accept-Language": "ja"}).json()
    assert view["hints"] == ["Add ¥500 more to your cart to get Spend 5000 get 600 off."]
    assert japanese["hints"] == ["カートにあと￥500分追加すると、Spend 5000 get 600 offが適用されます。"]


def test_a_code_check_answers_in_the_customers_language(server):
    with server.client("checkout") as c:
        english = c.post("/v1/codes/check", json={"code": "NO-SUCH-CODE"})
        japanese = c.post("/v1/codes/check", json={"code": "WELCOME"}, headers={"Accept-Language": "ja-JP"})
    assert english.json() == {"usable": False, "message": CODE_REFUSED_MESSAGE}
    assert japanese.json() == {"usable": True, "message": "このコードはご利用いただけます。"}
    assert japanese.headers["content-language"] == "ja-JP"


# --- bad input --------------------------------------------------------------------------------------

def test_malformed_json_is_400(server):
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", content=b'{"cart": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["reason"] == "malformed_json"


def test_a_duplicate_key_is_malformed(server):
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", content=b'{"cart": {}, "cart": {}}', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "duplicate key" in response.json()["detail"]


def test_a_body_that_is_not_json_is_415(server):
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", content=b"cart=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


def test_an_unknown_field_and_a_missing_one_are_named(server):
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", json={"cart": cart(), "acount": account()})
    assert response.status_code == 400
    problems = response.json()["problems"]
    assert {p["path"] for p in problems} == {"$"}
    assert any("unknown field 'acount'" in p["message"] for p in problems)
    assert any("missing field account" in p["message"] for p in problems)


def test_a_float_price_is_refused_with_its_path(server):
    bad = cart()
    bad["lines"][0]["unit_price"] = 1000.5
    with server.client("checkout") as c:
        response = c.post("/v1/evaluate", json={"cart": bad, "account": account()})
    assert response.status_code == 400
    assert response.json()["problems"][0]["path"] == "$.cart.lines[0].unit_price"


def test_an_oversized_body_is_413_before_it_is_read(server):
    with server.client("checkout") as c:
        declared = c.post("/v1/evaluate", content=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
        chunked = c.post("/v1/evaluate", content=iter([b"x" * 65536] * (MAX_BODY_BYTES // 65536 + 2)),
                         headers={"Content-Type": "application/json"})
    assert declared.status_code == chunked.status_code == 413
    assert declared.json()["reason"] == "too_large"


def test_bytes_that_are_not_http_get_a_problem_body_too(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GARBAGE \x00\x01 NOT-HTTP\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/problem+json" in head.lower()
    problem = json.loads(body)
    assert problem["status"] == 400 and problem["reason"] == "malformed_http"


def test_unknown_paths_and_methods_get_problem_bodies(server):
    with server.client("checkout") as c:
        missing = c.get("/v1/nothing-here")
        wrong = c.delete("/v1/evaluate")
    assert (missing.status_code, wrong.status_code) == (404, 405)
    assert missing.headers["content-type"] == wrong.headers["content-type"] == "application/problem+json"


def test_a_bad_input_reserves_nothing(server):
    bad = _checkout("order-bad-input")
    bad["cart"]["lines"][0]["quantity"] = 0
    with server.client("checkout") as c:
        assert c.post("/v1/checkouts", json=bad).status_code == 400
    with server.client("admin") as c:
        assert c.get("/v1/checkouts/order-bad-input").json()["reason"] == "unknown_order"


# --- checkouts --------------------------------------------------------------------------------------

def test_a_checkout_reserves_commits_and_cancels(server):
    with server.client("checkout") as c:
        created = c.post("/v1/checkouts", json=_checkout("order-flow", "cust-flow", ["WELCOME"]))
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["reservation"]["state"] == "held"
        assert [a["promotion"] for a in body["trace"]["applied"]] == ["welcome-100"]
        assert c.post("/v1/checkouts/order-flow/commit").json()["state"] == "committed"
        released = c.post("/v1/checkouts/order-flow/release")
        assert released.status_code == 409 and released.json()["reason"] == "order_committed"
        cancelled = c.post("/v1/checkouts/order-flow/cancel", json={})
        assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    with server.client("admin") as c:
        shown = c.get("/v1/checkouts/order-flow").json()
    assert shown["reservation"]["state"] == "cancelled"
    assert shown["trace"] == body["trace"]


def test_a_released_checkout_gives_its_use_back(server):
    with server.client("checkout") as c:
        assert c.post("/v1/checkouts", json=_checkout("order-rel-1", "cust-rel", ["WELCOME"])).status_code == 201
        assert c.post("/v1/checkouts/order-rel-1/release").json()["state"] == "released"
        again = c.post("/v1/checkouts", json=_checkout("order-rel-2", "cust-rel", ["WELCOME"])).json()
    assert [a["promotion"] for a in again["trace"]["applied"]] == ["welcome-100"]


def test_a_retried_checkout_returns_the_same_reservation(server):
    request = _checkout("order-retry", "cust-retry", ["WELCOME"])
    with server.client("checkout") as c:
        first = c.post("/v1/checkouts", json=request)
        second = c.post("/v1/checkouts", json=request)
        other = c.post("/v1/checkouts", json=dict(request, cart=cart(quantity=4)))
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert other.status_code == 409 and other.json()["reason"] == "order_reused"


def test_a_retried_checkout_with_other_codes_is_order_reused(server, ledger):
    [code] = ledger.generate_codes("pool-300", 1, _now())
    request = _checkout("order-retry-codes", "cust-retry-codes", ["WELCOME", code.lower()])
    with server.client("checkout") as c:
        first = c.post("/v1/checkouts", json=request)
        assert first.status_code == 201, first.text
        assert c.post("/v1/checkouts", json=request).json() == first.json()   # the single-use code it holds
        for codes in ([], ["WELCOME"], [code], ["WELCOME", code, "SPARE"]):
            other = c.post("/v1/checkouts", json=dict(request, codes=codes))
            assert other.status_code == 409 and other.json()["reason"] == "order_reused", (codes, other.text)


def test_sixteen_clients_race_for_one_single_use_code(server, ledger):
    [code] = ledger.generate_codes("pool-300", 1, _now())
    statuses: list[tuple[int, str | None]] = []

    def buy(i: int) -> None:
        with server.client("checkout") as c:
            r = c.post("/v1/checkouts", json=_checkout(f"order-race-{i}", f"cust-race-{i}", [code]))
            statuses.append((r.status_code, r.json().get("reason")))

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses, key=str) == [(201, None)] + [(409, "code_already_used")] * 15


def test_an_unusable_code_refuses_the_checkout_with_its_reason(server):
    with server.client("checkout") as c:
        response = c.post("/v1/checkouts", json=_checkout("order-unknown-code", codes=["ZZZZ-ZZZZ-ZZZZ-ZZZZ"]))
    assert response.status_code == 409
    body = response.json()
    assert body["refusals"][0]["reason"] == "unknown_code"
    assert body["refusals"][0]["message"] == CODE_REFUSED_MESSAGE


def test_without_a_ledger_checkouts_are_503(tmp_path):
    srv = start(tmp_path)
    try:
        with srv.client("checkout") as c:
            response = c.post("/v1/checkouts", json=_checkout("order-x"))
            body = {"cart": cart(), "account": account(), "codes": ["WELCOME"]}
            priced = c.post("/v1/evaluate", json=dict(body, customer_id="cust-1"))   # no usage to read
            assert priced.status_code == 200
            assert priced.json()["applied"] == c.post("/v1/evaluate", json=body).json()["applied"]
        assert response.status_code == 503 and response.json()["reason"] == "no_ledger"
    finally:
        srv.stop()


# --- codes ------------------------------------------------------------------------------------------

def test_a_code_check_says_one_sentence_for_every_unusable_code(server, ledger):
    [used] = ledger.generate_codes("pool-300", 1, _now())
    with server.client("checkout") as c:
        assert c.post("/v1/checkouts", json=_checkout("order-code-check", "cust-cc", [used])).status_code == 201
        answers = {code: c.post("/v1/codes/check", json={"code": code}).json()
                   for code in ("NOPE", "GONE", "LATER", "DRAFT", used, "welcome")}
    assert answers.pop("welcome") == {"usable": True, "message": "This code can be used."}
    assert all(a == {"usable": False, "message": CODE_REFUSED_MESSAGE} for a in answers.values())


def test_a_code_check_counts_the_customers_own_uses(server):
    with server.client("checkout") as c:
        assert c.post("/v1/checkouts", json=_checkout("order-once", "cust-once", ["WELCOME"])).status_code == 201
        mine = c.post("/v1/codes/check", json={"code": "WELCOME", "customer_id": "cust-once"}).json()
        theirs = c.post("/v1/codes/check", json={"code": "WELCOME", "customer_id": "cust-other"}).json()
    assert (mine["usable"], theirs["usable"]) == (False, True)


# --- rules, metrics ---------------------------------------------------------------------------------

def test_promotions_and_the_rule_set_are_listed(server):
    with server.client("admin") as c:
        listed = c.get("/v1/promotions").json()
        one = c.get("/v1/promotions/welcome-100").json()
        missing = c.get("/v1/promotions/no-such-promotion")
        info = c.get("/v1/ruleset").json()
    assert [p["id"] for p in listed["promotions"]] == sorted(p["id"] for p in listed["promotions"])
    assert next(p for p in listed["promotions"] if p["id"] == "pool-300")["code"] is None
    assert one["ledger"]["promotion"] == "welcome-100"
    assert missing.status_code == 404
    assert info["version"] == listed["version"] == load_ruleset(server.rules).version
    assert (info["promotions"], info["active"]) == (6, 5)


def _counter(c, name: str, **labels: str) -> float:
    wanted = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_and_refusals(server):
    with server.client("admin") as admin, server.client(None) as anonymous:
        before = _counter(admin, "promo_requests_total", method="GET", route="/v1/ruleset", status="401")
        refusals = _counter(admin, "promo_refusals_total", reason="unauthorized")
        anonymous.get("/v1/ruleset")
        assert _counter(admin, "promo_requests_total", method="GET", route="/v1/ruleset", status="401") == before + 1
        assert _counter(admin, "promo_refusals_total", reason="unauthorized") == refusals + 1


def test_a_request_id_is_kept_or_made(server):
    with server.client(None) as c:
        given = c.get("/healthz", headers={"X-Request-Id": "abc-123"})
        made = c.get("/healthz", headers={"X-Request-Id": "not ok; <script>"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32


def test_the_request_log_names_requests_but_never_codes(server):
    with server.client("checkout") as c:
        c.post("/v1/codes/check", json={"code": "SECRET-CODE-XYZ"}, headers={"X-Request-Id": "log-check"})
    deadline = time.monotonic() + 5     # the line is written once the response has been sent
    while True:
        lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
        mine = [entry for entry in lines if entry["request_id"] == "log-check"]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert mine and mine[0]["route"] == "/v1/codes/check" and mine[0]["key"] == "web"
    assert "SECRET-CODE-XYZ" not in server.log.read_text()
