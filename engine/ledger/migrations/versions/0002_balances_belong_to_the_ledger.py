"""Balances belong to the ledger: a lot's terms (granted, expires, pays for), a point's value and where a
balance came from are kept with it; balance operations are applied once per operation id; reservation
items name one hold kind each (use, customer_use, budget, code, promotional_balance, gift_card, points,
grant) instead of four.

Revision ID: 0002
Revises: 0001
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(128)


def upgrade() -> None:
    with op.batch_alter_table("promo_balances") as batch:
        batch.add_column(sa.Column("granted_at", sa.String(40)))
        batch.add_column(sa.Column("granted_at_us", sa.BigInteger))
        batch.add_column(sa.Column("expires_at", sa.String(40)))
        batch.add_column(sa.Column("expires_at_us", sa.BigInteger))
        batch.add_column(sa.Column("pays_for", sa.Text))
        batch.add_column(sa.Column("point_value", sa.String(40)))
        batch.add_column(sa.Column("origin", sa.String(200)))
    op.execute("UPDATE promo_balances SET origin = 'trace'")   # opened from a trace before 0002: not trusted terms
    with op.batch_alter_table("promo_reservation_items") as batch:
        batch.alter_column("kind", type_=sa.String(24), existing_type=sa.String(16), existing_nullable=False)
    op.create_table(
        "promo_balance_operations",
        sa.Column("op_id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
    )
    # One hold kind per item: a promotion item held a use and its budget; a balance item's kind is in its subject.
    conn = op.get_bind()
    items = sa.table("promo_reservation_items", sa.column("id"), sa.column("order_id"), sa.column("kind"),
                     sa.column("subject"), sa.column("uses"), sa.column("amount"), sa.column("uses_back"),
                     sa.column("amount_back"), sa.column("forfeited"))
    for row in conn.execute(sa.select(items)).all():
        if row.kind == "promotion":
            if row.amount or row.amount_back:
                conn.execute(sa.insert(items).values(order_id=row.order_id, kind="budget", subject=row.subject, uses=0,
                                                     amount=row.amount, uses_back=0, amount_back=row.amount_back,
                                                     forfeited=0))
            conn.execute(sa.update(items).where(items.c.id == row.id).values(kind="use", amount=0, amount_back=0))
        elif row.kind == "customer":
            conn.execute(sa.update(items).where(items.c.id == row.id).values(kind="customer_use"))
        elif row.kind == "balance":
            conn.execute(sa.update(items).where(items.c.id == row.id).values(kind=json.loads(row.subject)[1]))


def downgrade() -> None:
    op.drop_table("promo_balance_operations")
    with op.batch_alter_table("promo_balances") as batch:
        for name in ("origin", "point_value", "pays_for", "expires_at_us", "expires_at", "granted_at_us", "granted_at"):
            batch.drop_column(name)
