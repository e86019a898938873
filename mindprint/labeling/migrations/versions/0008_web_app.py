"""the web app: project reward pools, reviewers' label overrides, export jobs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("reward_pool", sa.String(80), nullable=False, server_default="0"))
    op.create_table(
        "label_overrides",
        sa.Column("task_id", sa.Integer, sa.ForeignKey("task_items.id"), primary_key=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("reviewer", sa.String(42), sa.ForeignKey("accounts.address"), nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("requester", sa.String(42), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # queued | running | done | failed
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("samples", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("path", sa.Text, nullable=True),
        sa.Column("runner", sa.String(80), nullable=True),  # host:pid of the process running it
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_submissions_created", "submissions", ["created"])


def downgrade() -> None:
    op.drop_index("ix_submissions_created", "submissions")
    op.drop_table("export_jobs")
    op.drop_table("label_overrides")
    op.drop_column("projects", "reward_pool")
