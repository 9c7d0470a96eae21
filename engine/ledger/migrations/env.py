"""Alembic environment for the ledger: runs on the connection `store.migrate()` hands over, or on the
URL given as `sqlalchemy.url` (for the `alembic` command line)."""
from alembic import context

from engine.ledger.store import make_engine, metadata

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:  # noqa: ANN001
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with make_engine(config.get_main_option("sqlalchemy.url"), create=True).begin() as conn:
        run(conn)
