"""api keys, reward epochs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("address", sa.String(42), sa.ForeignKey("accounts.address"), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "reward_epochs",
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("total", sa.String(80), nullable=False),
        sa.Column("claims", sa.JSON, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reward_epochs")
    op.drop_table("api_keys")
