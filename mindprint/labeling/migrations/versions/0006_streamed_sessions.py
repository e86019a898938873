"""streamed sessions: one row per session and per chunk, verified on arrival; idempotency bound to the
body; sign-in nonces keep the exact message issued

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_sessions",
        sa.Column("session", sa.String(64), primary_key=True),
        sa.Column("contributor", sa.String(42), sa.ForeignKey("accounts.address"), nullable=False, index=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("header_cid", sa.String(120), nullable=False),
        sa.Column("header_block", sa.LargeBinary, nullable=False),
        sa.Column("header_sealed", sa.LargeBinary, nullable=False),
        sa.Column("header_signature", sa.LargeBinary, nullable=False),
        sa.Column("next_seq", sa.Integer, nullable=False),
        sa.Column("last_cid", sa.String(120), nullable=False),
        sa.Column("last_t0_ns", sa.BigInteger, nullable=True),
        sa.Column("last_n_times", sa.Integer, nullable=False),
        sa.Column("samples_seconds", sa.Float, nullable=False),
        sa.Column("clock_seconds", sa.Float, nullable=False),
        sa.Column("bytes_received", sa.BigInteger, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ingest_chunks",
        sa.Column("session", sa.String(64), sa.ForeignKey("ingest_sessions.session"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("cid", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("t0_ns", sa.BigInteger, nullable=False),
        sa.Column("n_times", sa.Integer, nullable=False),
        sa.UniqueConstraint("session", "cid", name="uq_ingest_chunks_session_cid"),
    )
    with op.batch_alter_table("idempotent_requests") as batch:
        batch.add_column(sa.Column("body_hash", sa.String(64), nullable=True))
    # a contributor's latest accepted samples (attention baseline) without scanning their history
    op.create_index("ix_submissions_history", "submissions", ["contributor", "status", "created"])
    with op.batch_alter_table("login_nonces") as batch:  # strict sign-in: the exact message issued
        batch.add_column(sa.Column("message", sa.Text, nullable=True))
        batch.create_index("ix_login_nonces_expires", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_submissions_history", table_name="submissions")
    with op.batch_alter_table("login_nonces") as batch:
        batch.drop_index("ix_login_nonces_expires")
        batch.drop_column("message")
    with op.batch_alter_table("idempotent_requests") as batch:
        batch.drop_column("body_hash")
    op.drop_table("ingest_chunks")
    op.drop_table("ingest_sessions")
