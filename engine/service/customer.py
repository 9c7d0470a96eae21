"""The customer's view of a trace: what a checkout page may show the person buying.

Lines with what each pays, the promotions that applied by their names, amounts formatted for the
currency in the customer's locale, and only the messages a customer may see: the codes they typed
(unknown, expired and used codes all read as one sentence, so the answer is no oracle for guessing
codes; a single-use code is shown as typed, never as the engine's internal `POOL:` token) and near-miss
hints. Nothing of the account (balances, tier, segments), no `inputs`, no reasons why an automatic
promotion did not apply. Schema: schemas/customer_trace.schema.json.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Mapping

from babel import Locale

from ..ledger import CODE_REFUSED_MESSAGE, customer_message
from ..render import money
from ..trace import CodeResult, Trace

LOCALES = ("en_US", "ja_JP")          # the locales a customer view is formatted in
DEFAULT_LOCALE = "en_US"
FORMAT = 1
NOT_MET = "This cart does not meet the code's conditions yet."


def locale_for(accept_language: str | None) -> str:
    """The best of LOCALES for an Accept-Language header (`ja,en;q=0.5` -> ja_JP): the preferred tags in
    order of quality, each matched exactly or by its language (`en-GB` -> en_US); en_US by default."""
    if not accept_language:
        return DEFAULT_LOCALE
    wanted = []
    for part in accept_language.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and 0 < quality <= 1:
            wanted.append((quality, tag.replace("-", "_")))
    exact = {code.lower(): code for code in LOCALES}
    by_language = {Locale.parse(code).language: code for code in LOCALES}
    for _, tag in sorted(wanted, key=lambda w: -w[0]):   # stable: equal qualities keep the client's order
        chosen = exact.get(tag.lower()) or by_language.get(tag.split("_")[0].lower())
        if chosen is not None:
            return chosen
    return DEFAULT_LOCALE


def customer_view(trace: Trace, locale: str, typed: Mapping[str, str] | None = None,
                  refused_before: Iterable[str] = ()) -> dict[str, Any]:
    """The view of `trace` for the customer. `typed` maps a code evaluate() saw (a single-use code's
    token) to what the customer typed; `refused_before` are typed codes the ledger already refused
    (unknown, used or expired single-use codes), which evaluate() never saw."""
    typed = typed or {}

    def amount(value: Decimal) -> dict[str, str]:
        return {"amount": f"{value:f}", "display": money(value, trace.currency, locale)}

    names = {a.promotion: a.name for a in trace.applied}
    saved: dict[str, Decimal] = {}     # a promotion with several benefits is one line for the customer
    for a in trace.applied:
        saved[a.promotion] = saved.get(a.promotion, Decimal(0)) + a.amount
    first = {a.promotion: a for a in reversed(trace.applied)}
    lines = [{"id": line.id, "name": line.name, "quantity": line.quantity, "unit_price": amount(line.unit_price),
              "discount": amount(line.discount), "pays": amount(line.total)} for line in trace.lines]
    out: dict[str, Any] = {
        "format": FORMAT, "currency": trace.currency, "locale": locale, "lines": lines,
        "promotions": [{"name": a.name, "saved": amount(saved[pid]),
                        **({"code": typed.get(a.code, a.code)} if a.code else {})}
                       for pid, a in ((pid, first[pid]) for pid in saved)],
        "codes": [_code(c, trace, names, typed) for c in trace.codes]
        + [{"code": code, "accepted": False, "message": CODE_REFUSED_MESSAGE} for code in refused_before],
        "hints": [h.message for h in trace.hints],
        "grants": [{"name": g.name, "balance": amount(g.amount), "expires_at": g.expires_at} for g in trace.grants],
        "totals": {"subtotal": amount(trace.totals.subtotal), "discount": amount(trace.totals.discount),
                   "shipping": amount(trace.totals.shipping - trace.totals.shipping_discount),
                   "total": amount(trace.totals.total)},
    }
    if trace.shipping is not None:
        s = trace.shipping
        out["shipping"] = {"method": s.method, "price": amount(s.price), "discount": amount(s.discount),
                           "pays": amount(s.total)}
    return out


def _code(result: CodeResult, trace: Trace, names: Mapping[str, str], typed: Mapping[str, str]) -> dict[str, Any]:
    shown = typed.get(result.entered, result.entered)
    refused = customer_message(result)
    if refused is not None:
        return {"code": shown, "accepted": False, "message": refused}
    applied = [names[p] for p in result.promotions if p in names]
    if applied:
        return {"code": shown, "accepted": True, "message": "Applied: " + ", ".join(applied)}
    for missed in trace.not_applied:
        if missed.promotion in result.promotions:
            message = customer_message(missed)
            if message is not None:
                return {"code": shown, "accepted": False, "message": message}
    hint = next((h.message for h in trace.hints if h.promotion in result.promotions), NOT_MET)
    return {"code": shown, "accepted": False, "message": hint}
