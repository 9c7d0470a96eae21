"""Small pure pieces every ledger module shares: money in minor units, instants as microseconds and
ISO text, row subjects as JSON, refusals rendered from the message table, and the argument checks
every operation makes before it touches the database."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Mapping

from sqlalchemy import Connection, Table, bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import PromoError
from ..inputs import parse_now
from ..money import quantum
from ..text import shorten, text_problem
from .errors import LedgerError, LedgerReason, Refusal, message

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_ID = 128            # the ID columns' width (store.ID)


def check_id(value: object, name: str) -> str:
    """An order, customer, account or lot id: text of 1 to 128 characters, no control or invisible
    characters, no surrounding spaces. Checked before any SQL, so the database never sees it otherwise."""
    problem = text_problem(value, MAX_ID, identifier=True)
    if problem is None and (not value or value != value.strip()):
        problem = "must be 1 to 128 characters without surrounding spaces"
    if problem is not None:
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{name} {problem}; got {shorten(value)}")
    return value  # type: ignore[return-value]


def check_now(now: object) -> datetime:
    """`now` as an aware datetime inside the engine's date range; anything else is a bad request."""
    try:
        return parse_now(now)  # type: ignore[arg-type]
    except PromoError as exc:
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"now: {exc.problems[0].message if exc.problems else exc}") \
            from None
    except (TypeError, ValueError, OverflowError):
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"now must be an ISO 8601 time with a UTC offset; "
                                                           f"got {shorten(now)}") from None


def minor(amount: Decimal | str, currency: str) -> int:
    """Money as a whole number of minor units; an amount finer than the currency is refused, never cut off."""
    try:
        units = Decimal(amount) / quantum(currency)
    except (InvalidOperation, TypeError, ValueError):
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{shorten(amount)} is not a money amount") from None
    if not units.is_finite() or units != units.to_integral_value():
        raise LedgerError(LedgerReason.BAD_REQUEST, detail=f"{shorten(amount)} is finer than {currency} allows")
    return int(units)


def money_decimal(units: int, currency: str) -> Decimal:
    return Decimal(units) * quantum(currency)


def money(units: int, currency: str) -> str:
    return f"{money_decimal(units, currency):f} {currency}"


def us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def subject_text(parts: tuple[str, ...]) -> str:
    return json.dumps(list(parts), ensure_ascii=False)


def refusal(kind: str, subject: str, reason: LedgerReason, **values: Any) -> Refusal:
    values.setdefault("subject", subject)
    return Refusal(kind, subject, reason, message(reason, **values))


# The statements every checkout runs are built once and executed with parameters: building a
# SQLAlchemy statement (and its cache key) costs several times more than SQLite takes to run it.

@lru_cache(maxsize=None)
def _inserting(dialect: str, table: Table) -> Any:
    dialect_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return dialect_insert(table).on_conflict_do_nothing().returning(list(table.primary_key.columns)[0])


def insert_ignore(conn: Connection, table: Table, **values: Any) -> bool:
    """Insert a row unless its key exists (the first checkout to touch a counter creates it); True when
    this call inserted it. RETURNING says so on both backends (PostgreSQL reports rowcount -1 for
    ON CONFLICT DO NOTHING, which a truthiness test would take for an insert)."""
    return conn.execute(_inserting(conn.dialect.name, table), values).first() is not None


@lru_cache(maxsize=None)
def _adding(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> Any:
    return update(table).where(*(table.c[k] == bindparam(f"key_{k}") for k in keys)) \
        .values({table.c[c]: table.c[c] + bindparam(f"add_{c}") for c in columns})


def add_to(conn: Connection, table: Table, key: Mapping[str, Any], **deltas: int) -> None:
    """`UPDATE table SET column = column + delta, ... WHERE <key>`: counters and balances change only
    by what is added to them in the database, never by a value read earlier and written back."""
    params = {f"key_{k}": v for k, v in key.items()}
    params.update({f"add_{c}": d for c, d in deltas.items()})
    conn.execute(_adding(table, tuple(key), tuple(deltas)), params)
