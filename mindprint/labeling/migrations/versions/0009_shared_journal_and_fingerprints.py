"""the anchoring journal in the platform database (every replica answers proofs; many workers
anchor); a retry time on jobs (pin pushes to an IPFS node that is down back off); the replay
index's fingerprints in the database (every replica checks what any replica accepted)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "anchor_pending",
        sa.Column("cid", sa.String(120), primary_key=True),
        sa.Column("added", sa.Float, nullable=False, index=True),
    )
    op.create_table(
        "anchor_batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("root", sa.String(64), unique=True, nullable=False),
        sa.Column("manifest", sa.String(120), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("sender", sa.String(64), nullable=True),
        sa.Column("claimed", sa.Float, nullable=True),
        sa.Column("tx_hash", sa.String(80), nullable=True),
        sa.Column("block", sa.BigInteger, nullable=True),
        sa.Column("chain_id", sa.BigInteger, nullable=True),
        sa.Column("registry", sa.String(64), nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("anchored", sa.Float, nullable=True),
        sa.Column("history", sa.Text, nullable=False, server_default="[]"),
    )
    op.create_table(
        "anchor_members",
        sa.Column("cid", sa.String(120), primary_key=True),
        sa.Column("batch", sa.Integer, sa.ForeignKey("anchor_batches.id"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("proof", sa.Text, nullable=False),
    )

    op.create_table(
        "fingerprints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("sample", sa.String(120), nullable=False, index=True),
        sa.Column("codes", sa.LargeBinary, nullable=False),
        sa.Column("positions", sa.LargeBinary, nullable=False),
    )
    guard = op.create_table(
        "replay_guard",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("accepted", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.bulk_insert(guard, [{"id": 1, "accepted": 0}])


def downgrade() -> None:
    op.drop_table("replay_guard")
    op.drop_table("fingerprints")
    op.drop_table("anchor_members")
    op.drop_table("anchor_batches")
    op.drop_table("anchor_pending")
    op.drop_column("jobs", "not_before")
