"""The ledger's tables (SQLAlchemy Core), how to connect to SQLite or PostgreSQL, and schema migrations.

One code path for both backends. Money is stored as whole minor units (BigInteger: ¥500 is 500, $12.34
is 1234) so that neither backend rounds; points as whole points. Instants used for comparison are
microseconds since the epoch (BigInteger); instants shown to people are ISO 8601 text in UTC.

Concurrency: every ledger operation is one transaction. On SQLite that transaction starts with
`BEGIN IMMEDIATE` (the write lock is taken up front, so two writers never interleave) in WAL mode with
a busy timeout; on PostgreSQL rows are locked with `SELECT ... FOR UPDATE` in one global order
(reservations, promotions, customers, codes, balances). The schema is created and upgraded by Alembic
(`migrations/`), never by `create_all`; `migrate()` runs `upgrade head`.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from sqlalchemy import (BigInteger, Column, Connection, Engine, ForeignKey, Index, Integer, LargeBinary, MetaData, String,
                        Table, Text, create_engine, event)

metadata = MetaData()
ID = String(128)

reservations = Table(
    "promo_reservations", metadata,
    Column("order_id", ID, primary_key=True),
    Column("customer_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("ruleset_version", String(80), nullable=False),
    Column("trace_hash", String(64), nullable=False),      # sha256 of the trace's canonical JSON
    Column("trace", Text, nullable=False),                 # the trace, for cancellations
    Column("state", String(16), nullable=False),           # held | committed | released | expired | cancelled
    Column("created_at", String(40), nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),   # held until this instant (exclusive)
    Column("expires_at", String(40), nullable=False),
    Column("closed_at", String(40)),                       # committed, released or expired at
    Column("returned", Text, nullable=False, default="{}"),   # line id -> units returned so far
    Column("returns", Text, nullable=False, default="{}"),    # return id -> what it gave back (replays)
    Index("ix_promo_reservations_state_expires", "state", "expires_at_us"),
)

# What one reservation holds. `subject` is a JSON array naming the counter row it holds on.
reservation_items = Table(
    "promo_reservation_items", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("order_id", ID, ForeignKey("promo_reservations.order_id"), nullable=False, index=True),
    Column("kind", String(24), nullable=False),            # a hold kind: engine/ledger/holds.py
    Column("subject", String(400), nullable=False),
    Column("uses", Integer, nullable=False, default=0),
    Column("amount", BigInteger, nullable=False, default=0),
    Column("uses_back", Integer, nullable=False, default=0),     # given back by cancellations
    Column("amount_back", BigInteger, nullable=False, default=0),
    Column("forfeited", BigInteger, nullable=False, default=0),  # lot balance that expired before it came back
)

promotion_counters = Table(
    "promo_promotion_counters", metadata,
    Column("promotion_id", String(64), primary_key=True),
    Column("uses", BigInteger, nullable=False, default=0),        # committed
    Column("held_uses", BigInteger, nullable=False, default=0),   # reserved, not yet committed
    Column("spent", BigInteger, nullable=False, default=0),       # budget, minor units
    Column("held_spent", BigInteger, nullable=False, default=0),
)

customer_counters = Table(
    "promo_customer_counters", metadata,
    Column("promotion_id", String(64), primary_key=True),
    Column("customer_id", ID, primary_key=True),
    Column("uses", BigInteger, nullable=False, default=0),
    Column("held_uses", BigInteger, nullable=False, default=0),
)

codes = Table(
    "promo_codes", metadata,
    Column("code_hash", String(64), primary_key=True),     # the code itself is never stored
    Column("promotion_id", String(64), nullable=False, index=True),
    Column("state", String(16), nullable=False),           # unused | held | redeemed
    Column("order_id", ID),
    Column("batch", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
)

balances = Table(
    "promo_balances", metadata,
    Column("account_id", ID, primary_key=True),
    Column("kind", String(24), primary_key=True),          # promotional_balance | gift_card | points
    Column("lot_id", ID, primary_key=True),                # "" for the gift card and points
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),          # minor units (points: whole points)
    Column("held", BigInteger, nullable=False, default=0),
    Column("opened_at", String(40), nullable=False),
    # A lot's terms, as credited (the account's `promotional_balance` entry): when it may be used, what for.
    Column("granted_at", String(40)),
    Column("granted_at_us", BigInteger),
    Column("expires_at", String(40)),
    Column("expires_at_us", BigInteger),                   # exclusive
    Column("pays_for", Text),                              # JSON, the account file's words
    Column("point_value", String(40)),                     # points: the money value of one point
    Column("origin", String(200)),                         # credit | order:<id> (a grant) | trace (before 0002)
)

# Balance operations applied, by the caller's operation id: a retried credit or load is applied once.
balance_operations = Table(
    "promo_balance_operations", metadata,
    Column("op_id", ID, primary_key=True),
    Column("account_id", ID, nullable=False),
    Column("action", String(32), nullable=False),
    Column("request", Text, nullable=False),               # JSON of what was asked: the same id with another request is refused
    Column("at", String(40), nullable=False),
)

# Append-only: the ledger only ever INSERTs here.
audit_log = Table(
    "promo_audit_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("order_id", ID),
    Column("subject", String(400)),
    Column("delta", Text, nullable=False),
)

# Every rule set the ledger has priced orders with, by version: the rule files as one compressed blob
# (engine/ledger/archive.py), written by the first reserve() of a version and never changed, so that an
# order priced before a reload or a restart can still be cancelled and returned.
ruleset_versions = Table(
    "promo_ruleset_versions", metadata,
    Column("version", String(80), primary_key=True),
    Column("files", LargeBinary, nullable=False),
    Column("created_at", String(40), nullable=False),
)

TABLES = (reservations, reservation_items, promotion_counters, customer_counters, codes, balances, balance_operations,
          audit_log, ruleset_versions)
MIGRATIONS = Path(__file__).with_name("migrations")
HEAD_REVISION = "0003"   # the revision a Ledger requires; `promo ledger init` upgrades to it


def database_url(db: str) -> str:
    """A plain file path means SQLite; `postgresql://` gets the psycopg 3 driver."""
    if "://" not in db:
        return f"sqlite+pysqlite:///{Path(db).resolve()}"
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


def make_engine(db: str, pool_size: int = 8, *, create: bool = False) -> Engine:
    """An engine for the ledger's database. A SQLite file is opened read-write and never created unless
    `create` (what `promo ledger init` and `migrate` callers pass): a mistyped path is an error, not a
    new empty ledger."""
    url = database_url(db)
    if url.startswith("sqlite"):
        if not create and "://" not in db:
            url = f"sqlite+pysqlite:///file:{quote(str(Path(db).resolve()))}?mode=rw&uri=true"
        # A pooled connection serves one thread at a time, so sharing it between threads is safe.
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_timeout=120,
                               connect_args={"timeout": 60, "isolation_level": None, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # noqa: ANN001 - DB-API objects
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")   # a committed redemption survives a power loss
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # noqa: ANN001
            # Operations take the write lock up front; reads (see `reading`) share the file with them.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("promo_read") else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         isolation_level="READ COMMITTED")


def reading(engine: Engine) -> Connection:
    """A connection for reads only: on SQLite it does not take the write lock."""
    return engine.connect().execution_options(promo_read=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the ledger's tables (`alembic upgrade head`), in one transaction."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
