"""federated rounds under secure aggregation: rounds and the clients' messages

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fl_rounds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("phase", sa.String(16), nullable=False, index=True),
        sa.Column("model_cid", sa.String(120), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("min_clients", sa.Integer, nullable=False),
        sa.Column("max_clients", sa.Integer, nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("phase_seconds", sa.Float, nullable=False),
        sa.Column("phase_deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("members", sa.JSON, nullable=False),
        sa.Column("result_cid", sa.String(120), nullable=True),
        sa.Column("record_cid", sa.String(120), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "fl_messages",
        sa.Column("round", sa.Integer, sa.ForeignKey("fl_rounds.id"), primary_key=True),
        sa.Column("step", sa.String(16), primary_key=True),
        sa.Column("sender", sa.String(42), primary_key=True),
        sa.Column("recipient", sa.String(42), primary_key=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fl_messages")
    op.drop_table("fl_rounds")
