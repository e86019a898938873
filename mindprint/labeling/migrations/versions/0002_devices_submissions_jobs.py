"""devices, submissions, idempotent requests, jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("contributor", sa.String(42), sa.ForeignKey("accounts.address"), nullable=False, index=True),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "submissions",
        sa.Column("cid", sa.String(120), primary_key=True),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("task_items.id"), nullable=False, index=True),
        sa.Column("contributor", sa.String(42), sa.ForeignKey("accounts.address"), nullable=False, index=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("label", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("engagement", sa.Float, nullable=True),
        sa.Column("gold_correct", sa.Boolean, nullable=True),
        sa.Column("sealed_manifest", sa.String(120), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "idempotent_requests",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column("ref", sa.String(120), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "ref"),
    )


def downgrade() -> None:
    for table in ("jobs", "idempotent_requests", "submissions", "devices"):
        op.drop_table(table)
