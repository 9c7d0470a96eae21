"""The customer's view of a trace: what a checkout page may show the person buying.

Lines with what each pays, the promotions that applied by their names, amounts formatted for the
currency in the customer's locale, and only the messages a customer may see: the codes they typed
(unknown, expired and used codes all read as one sentence, so the answer is no oracle for guessing
codes; a single-use code is shown as typed, never as the engine's internal `POOL:` token) and near-miss
hints. Nothing of the account (balances, tier, segments), no `inputs`, no reasons why an automatic
promotion did not apply. Schema: schemas/customer_trace.schema.json.

Language: every sentence is said in the language of the chosen locale, from the message catalogues
(engine/translations.py): the code sentences, the hints (rendered again from their template, with the
amount formatted for the customer's locale) and, for each applied promotion, its own `customer_message`
from its rule file in that language (else in English, else its name). The merchant trace stays English.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Iterable, Mapping

from babel import Locale
from babel.lists import format_list

from ..ledger import CODE_REFUSED_MESSAGE, customer_message
from ..model import RuleSet
from ..reasons import HINTS
from ..render import money
from ..trace import CodeResult, Hint, Trace
from ..translations import DEFAULT_LANGUAGE, language_of, render, translate

LOCALES = ("en_US", "ja_JP")          # the locales a customer view is formatted in
DEFAULT_LOCALE = "en_US"
FORMAT = 1
NOT_MET = "This cart does not meet the code's conditions yet."
APPLIED = "Applied: {names}"
CODE_USABLE_MESSAGE = "This code can be used."
# Every template the customer view (and /v1/codes/check) can show: each has a translation in every catalogue.
TEMPLATES = (CODE_REFUSED_MESSAGE, CODE_USABLE_MESSAGE, NOT_MET, APPLIED, *HINTS.values())
# A hint's template is found again from its English text: the next-tier ones first (they are the longer).
_HINT_ORDER = ("next_tier_spend", "next_tier_quantity", "cart_spend", "spend", "quantity")


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
                  refused_before: Iterable[str] = (), ruleset: RuleSet | None = None) -> dict[str, Any]:
    """The view of `trace` for the customer. `typed` maps a code evaluate() saw (a single-use code's
    token) to what the customer typed; `refused_before` are typed codes the ledger already refused
    (unknown, used or expired single-use codes), which evaluate() never saw. `ruleset` (the one the
    trace was priced with) gives the promotions' own customer messages."""
    typed = typed or {}
    refused_text = translate(CODE_REFUSED_MESSAGE, locale)

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
                        "message": promotion_message(ruleset, pid, a.name, locale),
                        **({"code": typed.get(a.code, a.code)} if a.code else {})}
                       for pid, a in ((pid, first[pid]) for pid in saved)],
        "codes": [_code(c, trace, names, typed, locale) for c in trace.codes]
        + [{"code": code, "accepted": False, "message": refused_text} for code in refused_before],
        "hints": [hint_text(h, trace, locale) for h in trace.hints],
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


def _code(result: CodeResult, trace: Trace, names: Mapping[str, str], typed: Mapping[str, str],
          locale: str) -> dict[str, Any]:
    shown = typed.get(result.entered, result.entered)
    refused = customer_message(result)
    if refused is not None:
        return {"code": shown, "accepted": False, "message": translate(refused, locale)}
    applied = [names[p] for p in result.promotions if p in names]
    if applied:
        return {"code": shown, "accepted": True,
                "message": render(APPLIED, locale, names=format_list(applied, locale=locale))}
    for missed in trace.customer_not_applied():   # entered codes are among them
        if missed.promotion in result.promotions:
            message = customer_message(missed)
            if message is not None:
                return {"code": shown, "accepted": False, "message": translate(message, locale)}
    hint = next((hint_text(h, trace, locale) for h in trace.hints if h.promotion in result.promotions),
                None)
    return {"code": shown, "accepted": False, "message": hint or translate(NOT_MET, locale)}


def promotion_message(ruleset: RuleSet | None, promotion_id: str, name: str, locale: str) -> str:
    """An applied promotion's own sentence for the customer, in the locale's language, else in English,
    else its name."""
    promotion = ruleset.promotions.get(promotion_id) if ruleset is not None else None
    own = dict(promotion.customer_message) if promotion is not None else {}
    return own.get(language_of(locale)) or own.get(DEFAULT_LANGUAGE) or name


def hint_text(hint: Hint, trace: Trace, locale: str) -> str:
    """A near-miss hint in the customer's language, its amount formatted for their locale. The trace
    keeps the rendered English sentence and the shortfall; the template it came from is the one whose
    English, with this promotion's name, matches it. A sentence that matches none is shown as it is."""
    name = _promotion_name(trace, hint.promotion)
    for key in _HINT_ORDER:
        if name is not None and _hint_pattern(key, name).fullmatch(hint.message):
            if hint.kind == "quantity":
                shortfall = f"{hint.shortfall:f}"
            else:
                shortfall = money(hint.shortfall, trace.currency, locale)
            return render(HINTS[key], locale, shortfall=shortfall, name=name,
                          plural="" if hint.shortfall == 1 else "s")
    return hint.message


def _promotion_name(trace: Trace, promotion_id: str) -> str | None:
    for entry in (*trace.applied, *trace.customer_not_applied()):   # hinted ones are among them
        if entry.promotion == promotion_id:
            return entry.name
    return None


def _hint_pattern(key: str, name: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", HINTS[key])
    fill = {"{shortfall}": ".+?", "{plural}": "s?", "{name}": re.escape(name)}
    return re.compile("".join(fill.get(p, re.escape(p)) for p in parts), re.DOTALL)
