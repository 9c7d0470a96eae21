"""What each endpoint does, given a checked request body: plain functions that run in a worker thread,
call the engine and the ledger, and return a status and a JSON body. Authentication, body reading,
errors, timeouts, logs and metrics are app.py's.

The clock: a checkout-scoped request never chooses `now` (app.py refuses one that tries); every
checkout operation uses the server's clock.

A retried checkout: an order id names one checkout. When the ledger already holds the order, the
request is evaluated again as the order was first priced (its instant, its usage and the balances the
ledger had, its codes) and compared with the stored trace: the same request gives the same reservation
back, anything else is `order_reused`. A client that lost the first answer can therefore retry with the
same body as often as it likes without holding twice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

from ..errors import InputError, PromoError, RuleFileError
from ..evaluate import evaluate
from ..inputs import parse_codes, parse_now
from ..ledger import CODE_REFUSED_MESSAGE, CodeCheck, CodeStatus, LedgerError, LedgerReason, Reservation
from ..ledger.codes import code_hash, looks_like_pool_code
from ..ledger.ledger import Ledger
from ..model import Promotion
from ..text import normalise_code, shorten
from ..verify import first_difference
from ..whynot import explain_promotion, similar_ids
from ..translations import translate
from .customer import CODE_USABLE_MESSAGE, customer_view
from .keys import ApiKey
from .metrics import Metrics
from .problems import ServiceError, from_input_error
from .state import Served, Service, now_utc

BALANCE_KEYS = ("promotional_balance", "gift_card", "points")   # the ledger's, never the client's
DEFAULT_TTL = 900


@dataclass(frozen=True)
class Call:
    """One request, as the handlers see it."""

    served: Served
    service: Service
    metrics: Metrics
    key: ApiKey | None
    body: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    locale: str = "en_US"

    @property
    def actor(self) -> str:
        return f"promo-serve:{self.key.name}" if self.key is not None else "promo-serve"

    def ledger(self) -> Ledger:
        if self.served.ledger is None:
            raise ServiceError("no_ledger", "start the service with --ledger URL to run checkouts and codes")
        return self.served.ledger


Reply = tuple[int, Any]
Handler = Callable[[Call], Reply]


def evaluate_cart(call: Call) -> Reply:
    """With a ledger and a `customer_id`, priced with that customer's usage as a checkout would be (a
    used-up promotion is `usage_limit_reached`); without either, with no usage, as a price preview."""
    body = call.body
    now = _checked_now(body["now"]) if "now" in body else now_utc()
    codes, typed, refused = _resolved(call, body.get("codes", []), now)
    usage = call.served.ledger.usage_snapshot(body["customer_id"], now) \
        if call.served.ledger is not None and "customer_id" in body else None
    trace = _evaluated(call.served, body["cart"], body["account"], codes=codes, now=now,
                       preview=body.get("preview", []), usage=usage)
    if body.get("view") == "customer":
        return 200, customer_view(trace, call.locale, typed, refused, call.served.ruleset)
    return 200, trace.to_dict("compact" if body.get("view") == "compact" else "full")


def _resolved(call: Call, entered: list[str], now: Any) -> tuple[list[str], dict[str, str], list[str]]:
    """The codes to evaluate, which typed code each single-use token stands for, and the typed codes
    the ledger refused before evaluation. Without a ledger, the codes as entered."""
    _checked_codes(entered)
    if call.served.ledger is None or not entered:
        return list(entered), {}, []
    resolution = call.served.ledger.resolve_codes(entered, now)
    promotions = call.served.ruleset.promotions
    typed = {promotions[c.promotion].code: c.entered for c in resolution.checks if c.status is CodeStatus.POOL}
    refused = [c.entered for c in resolution.checks if c.status not in (CodeStatus.SHARED, CodeStatus.POOL)]
    return list(resolution.codes), typed, refused


def _checked_now(text: str) -> datetime:
    try:
        return parse_now(text)
    except InputError as exc:
        raise from_input_error(exc) from None


def _checked_codes(entered: list[str]) -> None:
    try:
        parse_codes(entered)
    except InputError as exc:
        raise from_input_error(exc) from None


def _evaluated(served: Served, cart: Any, account: Any, **options: Any) -> Any:
    try:
        return evaluate(served.ruleset, cart, account, **options)
    except PromoError as exc:
        raise from_input_error(exc) from None


# --- the preview page's ------------------------------------------------------------------------------

def preview_cart(call: Call) -> Reply:
    """The full trace at the chosen instant, with drafts and paused promotions previewed: what
    /v1/evaluate gives an admin key, with `now` required (a preview is for a given moment)."""
    body = call.body
    now = _checked_now(body["now"])
    codes, _, _ = _resolved(call, body.get("codes", []), now)
    trace = _evaluated(call.served, body["cart"], body["account"], codes=codes, now=now,
                       preview=body.get("preview", []))
    return 200, trace.to_dict("full")


def explain(call: Call) -> Reply:
    """One promotion's whole chain of checks on this cart (`promo explain --json`). An id the rule set
    does not have is 404, with the ids that are close."""
    body = call.body
    ruleset = call.served.ruleset
    wanted = body["promotion"]
    if wanted not in ruleset.promotions:
        close = similar_ids(ruleset, wanted)
        raise ServiceError("not_found", f"no promotion with id {shorten(wanted)} in the rule set being served"
                           + (f"; did you mean {', '.join(close)}?" if close else ""),
                           problems=({"path": "$.promotion", "message": "no promotion with this id"},))
    now = _checked_now(body["now"])
    codes, _, _ = _resolved(call, body.get("codes", []), now)
    try:
        explanation = explain_promotion(ruleset, body["cart"], body["account"], wanted, codes=codes, now=now,
                                        preview=body.get("preview", []))
    except PromoError as exc:
        raise from_input_error(exc) from None
    return 200, explanation.to_dict()


def examples(call: Call) -> Reply:
    return 200, {"examples": [e.to_dict() for e in call.service.examples]}


# --- checkouts ---------------------------------------------------------------------------------------

def create_checkout(call: Call) -> Reply:
    body = call.body
    ledger = call.ledger()
    order_id, customer_id = body["order_id"], body["customer_id"]
    try:
        return _replayed(call, ledger, ledger.order_trace(order_id))
    except LedgerError as exc:
        if exc.reason is not LedgerReason.UNKNOWN_ORDER:
            raise
    now = now_utc()
    resolution = ledger.resolve_codes(body.get("codes", []), now) if body.get("codes") else None
    if resolution is not None:
        _refuse_unusable_codes(resolution.checks, call.locale)
    usage = ledger.usage_snapshot(customer_id, now)
    account = _with_ledger_balances(ledger, body["account"], now)
    trace = _evaluated(call.served, body["cart"], account, codes=list(resolution.codes) if resolution else [],
                       now=now, usage=usage)
    try:
        reservation = ledger.reserve(trace, order_id, customer_id, body.get("ttl_seconds", DEFAULT_TTL), now,
                                     codes=resolution.pool_codes if resolution else (), actor=call.actor)
    except LedgerError as exc:
        if exc.reason is not LedgerReason.ORDER_REUSED:
            raise
        return _replayed(call, ledger, ledger.order_trace(order_id))   # the same request, raced with itself
    return 201, {"reservation": _reservation(reservation), "trace": trace.to_dict()}


def _refuse_unusable_codes(checks: tuple[CodeCheck, ...], locale: str) -> None:
    """A checkout whose customer typed a code that cannot be used (unknown, expired, used or held by
    another checkout) is refused rather than priced without it: the customer would pay more than the
    page they saw. Each refusal carries the merchant's detail; `message` is the customer's one sentence,
    in their language."""
    refusals = tuple({"kind": "code", "subject": f"code {i + 1}", "reason": c.status.value,
                      "message": translate(CODE_REFUSED_MESSAGE, locale)}
                     for i, c in enumerate(checks) if c.status not in (CodeStatus.SHARED, CodeStatus.POOL))
    if refusals:
        raise ServiceError(refusals[0]["reason"], "The checkout was refused: a code cannot be used; nothing was "
                                                  "reserved.", 409, "A code given for this checkout cannot be used",
                           refusals=refusals)


def _with_ledger_balances(ledger: Ledger, account: Any, now: Any) -> Any:
    """The client's account with the balances replaced by what the ledger holds: a checkout pays only with
    balances the ledger keeps. A malformed account is left for evaluate() to describe."""
    if not isinstance(account, dict) or not isinstance(account.get("id"), str):
        return account
    try:
        held = ledger.account_balances(account["id"], now)
    except LedgerError as exc:
        if exc.reason is not LedgerReason.BAD_REQUEST:
            raise
        return account
    return {**{k: v for k, v in account.items() if k not in BALANCE_KEYS}, **held}


def _replayed(call: Call, ledger: Ledger, stored: dict[str, Any]) -> Reply:
    body = call.body
    reservation = ledger.reservation(body["order_id"])
    if reservation.customer_id != body["customer_id"]:
        raise LedgerError(LedgerReason.ORDER_REUSED, body["order_id"])
    # Priced before a reload or a restart: the ledger keeps the rule set it priced with.
    ruleset = ledger.ruleset_for(stored["ruleset_version"], body["order_id"])
    inputs = stored["inputs"]
    account = body["account"]
    if isinstance(account, dict):
        account = {**{k: v for k, v in account.items() if k not in BALANCE_KEYS},
                   **{k: inputs["account"][k] for k in BALANCE_KEYS if k in inputs["account"]}}
    try:
        again = evaluate(ruleset, body["cart"], account, codes=_codes_as_priced(body.get("codes", []), reservation,
                                                                             ruleset),
                         now=stored["now"], usage=inputs["usage"])
    except PromoError:
        raise LedgerError(LedgerReason.ORDER_REUSED, body["order_id"]) from None
    if first_difference(stored, json.loads(again.to_json(indent=None))) is not None:
        raise LedgerError(LedgerReason.ORDER_REUSED, body["order_id"])
    return 201, {"reservation": _reservation(reservation), "trace": stored}


def _codes_as_priced(typed: list[str], reservation: Reservation, ruleset: Any) -> list[str]:
    """The retry's codes as the first checkout gave them to evaluate(): a single-use code this order holds
    becomes its promotion's token; any other code stays as typed, so that a retry with other codes (or
    none) prices differently and is `order_reused`, never the first checkout's reservation."""
    held = {h.subject[0]: h.subject[1] for h in reservation.holds if h.kind == "code"}
    out = []
    for code in typed:
        pid = held.get(code_hash(code)) if looks_like_pool_code(code) else None
        out.append(ruleset.promotions[pid].code if pid in ruleset.promotions else code)
    return out


def commit_checkout(call: Call) -> Reply:
    return 200, _reservation(call.ledger().commit(call.params["order_id"], now_utc(), actor=call.actor))


def release_checkout(call: Call) -> Reply:
    return 200, _reservation(call.ledger().release(call.params["order_id"], now_utc(), actor=call.actor))


def cancel_checkout(call: Call) -> Reply:
    result = call.ledger().cancel(call.params["order_id"], now_utc(), returned=call.body.get("returned"),
                                  return_id=call.body.get("return_id"), actor=call.actor)
    doc = result.to_dict()
    doc["returned"] = dict(result.returned)
    return 200, doc


def read_checkout(call: Call) -> Reply:
    ledger = call.ledger()
    order_id = call.params["order_id"]
    return 200, {"reservation": _reservation(ledger.reservation(order_id)), "trace": ledger.order_trace(order_id)}


def _reservation(reservation: Reservation) -> dict[str, Any]:
    doc = asdict(reservation)
    doc["holds"] = [dict(h, subject=list(h["subject"])) for h in doc["holds"]]
    return doc


# --- codes -------------------------------------------------------------------------------------------

def check_code(call: Call) -> Reply:
    """Whether a typed code can be used now (by this customer, when one is named). Unknown, expired,
    not yet started, paused and used codes all get the same sentence."""
    code, customer_id = call.body["code"], call.body.get("customer_id")
    try:
        parse_codes([code])
    except InputError as exc:
        raise ServiceError("invalid_input", "the code was refused",
                           problems=tuple({"path": "$.code", "message": p.message} for p in exc.problems)) from None
    now = now_utc()
    ruleset = call.served.ruleset
    ledger = call.served.ledger
    if ledger is not None:
        check = ledger.resolve_codes([code], now).checks[0]
        candidates = [check.promotion] if check.status in (CodeStatus.SHARED, CodeStatus.POOL) else []
        if check.status is CodeStatus.SHARED:
            candidates = list(ruleset.codes.get(normalise_code(code), ()))
    else:
        shared = normalise_code(code)
        candidates = [] if shared.startswith("POOL:") else list(ruleset.codes.get(shared, ()))
    live = [ruleset.promotions[p] for p in candidates if _live(ruleset.promotions[p], now)]
    if live and ledger is not None and customer_id is not None:
        usage = ledger.usage_snapshot(customer_id, now, promotions=[p.id for p in live])
        live = [p for p in live if p.id not in usage or _within_limits(p, usage[p.id])]
    usable = bool(live)
    return 200, {"usable": usable,
                 "message": translate(CODE_USABLE_MESSAGE if usable else CODE_REFUSED_MESSAGE, call.locale)}


def _live(promotion: Promotion, now: Any) -> bool:
    return promotion.status == "active" and (promotion.starts is None or promotion.starts <= now) \
        and (promotion.ends is None or now < promotion.ends)


def _within_limits(promotion: Promotion, usage: Any) -> bool:
    limits = promotion.limits
    return (limits.total_uses is None or usage.total_uses < limits.total_uses) and \
        (limits.uses_per_customer is None or usage.customer_uses < limits.uses_per_customer)


# --- rules -------------------------------------------------------------------------------------------

def list_promotions(call: Call) -> Reply:
    ruleset = call.served.ruleset
    return 200, {"version": ruleset.version, "promotions": [_promotion(p) for p in ruleset.promotions.values()]}


def read_promotion(call: Call) -> Reply:
    promotion = call.served.ruleset.promotions.get(call.params["promotion_id"])
    if promotion is None:
        raise ServiceError("not_found", "the rule set has no promotion with this id")
    doc = _promotion(promotion)
    if call.served.ledger is not None:
        doc["ledger"] = call.served.ledger.promotion_report(promotion.id, now_utc())
    return 200, doc


def _promotion(p: Promotion) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "status": p.status, "currency": p.currency,
            "starts": p.starts.isoformat() if p.starts else None, "ends": p.ends.isoformat() if p.ends else None,
            "code": None if p.code_pool else p.code, "code_pool": p.code_pool, "priority": p.priority,
            "exclusive": p.exclusive}


def ruleset_info(call: Call) -> Reply:
    ruleset = call.served.ruleset
    return 200, {"version": ruleset.version, "promotions": len(ruleset.promotions),
                 "active": sum(1 for p in ruleset.promotions.values() if p.status == "active"),
                 "currencies": sorted(ruleset.currencies), "loaded_at": call.served.loaded_at}


def reload_rules(call: Call) -> Reply:
    """With several workers, the answering worker publishes what it loaded, and every worker switches to
    it at the start of its next request: `version` is what each of them serves from this answer on."""
    try:
        reloaded = call.service.reload()
    except RuleFileError:
        call.metrics.reloaded("refused")
        raise
    call.metrics.reloaded("loaded")
    version = reloaded.served.ruleset.version
    return 200, {"version": version, "previous_version": reloaded.previous_version,
                 "changed": version != reloaded.previous_version, "workers": call.service.settings.workers,
                 "generation": reloaded.served.generation}


def healthz(call: Call) -> Reply:
    return 200, {"status": "ok"}


def readyz(call: Call) -> Reply:
    """Ready: rules loaded (with several workers: this worker serves the published rule set) and the
    ledger reachable."""
    reachable = call.service.ledger_reachable()
    current = call.service.behind is None
    checks = {"rules": "ok" if current else "behind", "ledger": ("ok" if reachable else "unreachable")
              if call.served.ledger else "none"}
    return (200, {"status": "ready", "checks": checks}) if reachable and current else \
        (503, {"status": "not ready", "checks": checks})
