"""The redemption ledger: durable usage limits, budgets, single-use codes and balances for promo-engine.

    from engine.ledger import Ledger, migrate, make_engine
    ledger = Ledger("ledger.db", rules)                  # or postgresql://..., after `promo ledger init`
    resolved = ledger.resolve_codes(["K7QX-M3HD-9WTR-BC4N"], now)
    usage = ledger.usage_snapshot(customer_id, now)
    trace = evaluate(rules, cart, account, codes=resolved.codes, now=now, usage=usage)
    ledger.reserve(trace, order_id, customer_id, ttl=900, now=now, codes=resolved.pool_codes)
    ledger.commit(order_id, now)                         # or ledger.release(order_id, now)
"""
from .codes import CodeCheck, CodeResolution, CodeStatus, customer_message
from .errors import CODE_REFUSED_MESSAGE, LedgerError, LedgerReason, Refusal, ReservationRefused
from .holds import Entry, Hold
from .ledger import Cancellation, Ledger, Reservation
from .store import database_url, make_engine, migrate

__all__ = [
    "CODE_REFUSED_MESSAGE", "Cancellation", "CodeCheck", "CodeResolution", "CodeStatus", "Entry", "Hold", "Ledger",
    "LedgerError", "LedgerReason", "Refusal", "Reservation", "ReservationRefused", "customer_message",
    "database_url", "make_engine", "migrate",
]
