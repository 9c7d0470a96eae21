"""A small rule set, carts and accounts for the ledger's tests and its benchmark: one promotion per thing
the ledger must keep (a use limit, a budget, a pool of single-use codes, a per-customer limit)."""
from __future__ import annotations

from typing import Any

from engine import evaluate
from engine.ruleset import build_ruleset

NOW = "2026-11-21T10:00:00+09:00"
SETTINGS = b"currencies: [JPY, USD]\nrounding: half_up\n"


def _promotion(pid: str, code: str | None, amount: str, limits: str, extra: str = "") -> bytes:
    code_line = f"code: {code}\n" if code else ""
    return (f"id: {pid}\nname: {pid}\nstatus: active\ncurrency: JPY\n{code_line}{extra}"
            f"targets: {{include: all}}\nbenefits: [{{type: amount_off, scope: per_order, amount: \"{amount}\"}}]\n"
            f"stacking: {{priority: 10, exclusive: false}}\nlimits: {limits}\n").encode()


FILES = {
    "rules/_settings.yaml": SETTINGS,
    "rules/limited-3.yaml": _promotion("limited-3", "LIMIT3", "100", "{total_uses: 3}"),
    "rules/budget-1500.yaml": _promotion("budget-1500", "BUDGET", "500", "{budget: \"1500\"}"),
    "rules/once-each.yaml": _promotion("once-each", "ONCE", "200",
                                       "{uses_per_customer: 1, return_usage_on_cancel: true}"),
    "rules/kept-use.yaml": _promotion("kept-use", "KEPT", "200", "{uses_per_customer: 1}"),
    "rules/pool-300.yaml": _promotion("pool-300", None, "300", "{return_usage_on_cancel: true}",
                                      "code_pool: true\nwindow: {ends: \"2026-12-01T00:00:00+09:00\"}\n"),
    "rules/min-spend.yaml": (b"id: min-spend\nname: min-spend\nstatus: active\ncurrency: JPY\ncode: MINSPEND\n"
                             b"eligibility: {all: [{name: cart_subtotal, operator: greater_than_or_equal_to, "
                             b"value: \"3000\"}]}\ntargets: {include: all}\n"
                             b"benefits: [{type: amount_off, scope: per_order, amount: \"600\"}]\n"
                             b"stacking: {priority: 10, exclusive: false}\nlimits: {budget: \"100000\"}\n"),
}


def rules(extra: dict[str, bytes] | None = None):
    return build_ruleset({**FILES, **(extra or {})})


def cart(lines: int = 1, quantity: int = 3, price: str = "1000", cart_id: str = "cart-1") -> dict[str, Any]:
    return {"id": cart_id, "currency": "JPY", "channel": "web", "shipping": {"method": "standard", "price": "500"},
            "lines": [{"id": f"L{i + 1}", "sku": f"SKU{i + 1}", "name": f"Item {i + 1}", "category": "books",
                       "seller": "first_party", "product_type": "physical", "unit_price": price,
                       "quantity": quantity} for i in range(lines)]}


def account(account_id: str = "cust-1", lot: str | None = None, gift_card: str | None = None,
            points: int | None = None, lot_expires: str = "2026-12-31T00:00:00+09:00") -> dict[str, Any]:
    doc: dict[str, Any] = {"id": account_id, "region": "JP", "tier": "standard", "segments": [], "order_count": 3,
                           "time_zone": "Asia/Tokyo"}
    if lot is not None:
        doc["promotional_balance"] = [{"id": "lot-1", "amount": lot, "currency": "JPY",
                                       "granted_at": "2026-11-01T00:00:00+09:00", "expires_at": lot_expires,
                                       "pays_for": {"shipping": True}}]
    if gift_card is not None:
        doc["gift_card"] = {"amount": gift_card, "currency": "JPY"}
    if points is not None:
        doc["points"] = {"balance": points, "value": "1", "currency": "JPY", "use": "as_needed"}
    return doc


def priced(ruleset, codes=(), acct=None, usage=None, now=NOW, **cart_args):
    return evaluate(ruleset, cart(**cart_args), acct or account(), codes=list(codes), now=now, usage=usage)


def fund(ledger, acct: dict[str, Any], now: str = NOW) -> dict[str, Any]:
    """Credit the ledger, through its own operations, with the balances `acct` claims (a lot already
    in the ledger is left as it is); returns `acct`. Balances belong to the ledger: a trace priced with
    balances it does not hold is refused."""
    held = ledger.balances(acct["id"], now)
    for lot in acct.get("promotional_balance", []):
        if ("promotional_balance", lot["id"]) not in held:
            ledger.credit_lot(acct["id"], lot["id"], lot["amount"], lot["currency"], now, granted_at=lot["granted_at"],
                              expires_at=lot.get("expires_at"), pays_for=lot.get("pays_for"))
    if "gift_card" in acct and ("gift_card", "") not in held:
        ledger.load_gift_card(acct["id"], acct["gift_card"]["amount"], acct["gift_card"]["currency"], now)
    if "points" in acct and ("points", "") not in held:
        p = acct["points"]
        ledger.set_points(acct["id"], p["balance"], p["value"], p["currency"], now)
    return acct
