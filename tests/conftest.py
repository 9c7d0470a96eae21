import shutil
from pathlib import Path

import pytest

# --- the ledger's two backends -------------------------------------------------------------------
# Every ledger test runs against SQLite (a file per test) and PostgreSQL (the server `make test` starts
# through scripts/postgres.sh, named by PROMO_TEST_POSTGRES_URL). A PostgreSQL test never passes
# silently without a server: it FAILS when the variable is missing or the server cannot be reached,
# and is skipped only when asked for with PROMO_SKIP_POSTGRES=1 outside CI.
import os  # noqa: E402

BACKENDS = ["sqlite", "postgres"]


def postgres_url() -> str:
    url = os.environ.get("PROMO_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("PROMO_SKIP_POSTGRES") == "1" and not os.environ.get("CI"):
            pytest.skip("PROMO_SKIP_POSTGRES=1: PostgreSQL ledger tests skipped on request")
        pytest.fail("PROMO_TEST_POSTGRES_URL is not set: run the tests with `make test`, which starts "
                    "PostgreSQL (scripts/postgres.sh), or set PROMO_SKIP_POSTGRES=1 locally to skip them")
    return url


@pytest.fixture(scope="session")
def _postgres_migrated():
    """The test database, emptied and migrated once per session (so the migration itself is tested)."""
    from sqlalchemy import text

    from engine.ledger.store import TABLES, make_engine, migrate
    url = postgres_url()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(TABLES):
                conn.execute(text(f"DROP TABLE IF EXISTS {table.name} CASCADE"))
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server is a failure, not a skip
        pytest.fail(f"PostgreSQL at {url} cannot be reached: {exc}")
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture(params=BACKENDS)
def ledger_db(request, tmp_path):
    """A migrated, empty ledger database: a SQLite file path or the PostgreSQL URL."""
    from engine.ledger.store import TABLES, make_engine, migrate
    if request.param == "sqlite":
        path = str(tmp_path / "ledger.db")
        engine = make_engine(path, create=True)
        migrate(engine)
        engine.dispose()
        return path
    url = request.getfixturevalue("_postgres_migrated")
    engine = make_engine(url)
    from sqlalchemy import text
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in TABLES) + " RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


# --- the backtest's rule change and corpus ----------------------------------------------------------------------
# `head` and `corpus`: what test_backtest, test_backtest_dask and test_backtest_report replay, built once a
# session (the corpus is 400 generated carts: generating it for each module cost a run each).
BUNDLED_RULES = Path(__file__).resolve().parent.parent / "rules"
ADDED_PROMOTION = """id: garden-100-off-each
name: 100 off every garden product
status: active
currency: JPY
targets:
  include:
    categories: [garden]
benefits:
  - type: amount_off
    scope: per_unit
    amount: "100"
stacking:
  priority: 60
  exclusive: false
"""


@pytest.fixture(scope="session")
def head(tmp_path_factory) -> Path:
    """The bundled rules with one promotion changed (books need 3,500 instead of 3,000), one removed (toys)
    and one added (garden)."""
    head = tmp_path_factory.mktemp("head") / "rules"
    shutil.copytree(BUNDLED_RULES, head)
    books = head / "books-500-off-over-3000.yaml"
    books.write_text(books.read_text().replace('value: "3000"', 'value: "3500"'))
    (head / "toys-200-off-each.yaml").unlink()
    (head / "garden-100-off-each.yaml").write_text(ADDED_PROMOTION)
    return head


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """400 carts generated for the bundled rules (seed 5)."""
    from engine.cli import main
    out = tmp_path_factory.mktemp("corpus") / "carts.jsonl"
    assert main(["carts", "generate", "--rules", str(BUNDLED_RULES), "--count", "400", "--seed", "5",
                 "--out", str(out)]) == 0
    return out
