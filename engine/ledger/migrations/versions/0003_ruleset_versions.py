"""The ledger keeps every rule set it has priced orders with: one row per version, the rule files as one
compressed blob, so that a cancel or a return after a reload or a restart needs no `history=`.

Orders reserved before this revision have no row: they still need the rule set passed as `history=`
(or loaded) to be cancelled.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promo_ruleset_versions",
        sa.Column("version", sa.String(80), primary_key=True),
        sa.Column("files", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("promo_ruleset_versions")
