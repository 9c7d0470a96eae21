"""The ledger: reservations and what they hold, usage and budget counters, single-use codes, balances,
and the append-only audit log.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(128)
SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "promo_reservations",
        sa.Column("order_id", ID, primary_key=True),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("ruleset_version", sa.String(80), nullable=False),
        sa.Column("trace_hash", sa.String(64), nullable=False),
        sa.Column("trace", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=False),
        sa.Column("closed_at", sa.String(40)),
        sa.Column("returned", sa.Text, nullable=False),
        sa.Column("returns", sa.Text, nullable=False),
    )
    op.create_index("ix_promo_reservations_state_expires", "promo_reservations", ["state", "expires_at_us"])
    op.create_table(
        "promo_reservation_items",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("order_id", ID, sa.ForeignKey("promo_reservations.order_id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("uses", sa.Integer, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("uses_back", sa.Integer, nullable=False),
        sa.Column("amount_back", sa.BigInteger, nullable=False),
        sa.Column("forfeited", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_promo_reservation_items_order_id", "promo_reservation_items", ["order_id"])
    op.create_table(
        "promo_promotion_counters",
        sa.Column("promotion_id", sa.String(64), primary_key=True),
        sa.Column("uses", sa.BigInteger, nullable=False),
        sa.Column("held_uses", sa.BigInteger, nullable=False),
        sa.Column("spent", sa.BigInteger, nullable=False),
        sa.Column("held_spent", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "promo_customer_counters",
        sa.Column("promotion_id", sa.String(64), primary_key=True),
        sa.Column("customer_id", ID, primary_key=True),
        sa.Column("uses", sa.BigInteger, nullable=False),
        sa.Column("held_uses", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "promo_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("promotion_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("order_id", ID),
        sa.Column("batch", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_promo_codes_promotion_id", "promo_codes", ["promotion_id"])
    op.create_table(
        "promo_balances",
        sa.Column("account_id", ID, primary_key=True),
        sa.Column("kind", sa.String(24), primary_key=True),
        sa.Column("lot_id", ID, primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("held", sa.BigInteger, nullable=False),
        sa.Column("opened_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "promo_audit_log",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("order_id", ID),
        sa.Column("subject", sa.String(400)),
        sa.Column("delta", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("promo_audit_log", "promo_balances", "promo_codes", "promo_customer_counters",
                  "promo_promotion_counters", "promo_reservation_items", "promo_reservations"):
        op.drop_table(table)
