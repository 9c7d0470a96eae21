"""The ledger's storage: the Alembic migration builds exactly the tables the code uses, on both backends,
and database names resolve to the right driver."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engine.ledger.store import database_url, make_engine, metadata, migrate


def test_the_migration_builds_exactly_the_tables_the_code_uses(ledger_db):
    engine = make_engine(ledger_db)
    migrate(engine)        # upgrading an up-to-date ledger is harmless
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_a_plain_path_is_sqlite_and_postgresql_urls_use_psycopg_3(tmp_path):
    assert database_url(str(tmp_path / "l.db")) == f"sqlite+pysqlite:///{tmp_path / 'l.db'}"
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"
