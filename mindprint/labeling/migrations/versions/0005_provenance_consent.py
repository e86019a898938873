"""what an export needs: signed sample bundles, binding deadlines, research consent

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("session", sa.String(64), nullable=True))
        batch.add_column(sa.Column("sample_block", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("device_signature", sa.String(130), nullable=True))
        batch.add_column(sa.Column("wallet_signature", sa.String(132), nullable=True))
        batch.create_index("ix_submissions_session", ["session"])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("deadline", sa.BigInteger, nullable=True))
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("consent", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("consent_message", sa.Text, nullable=True))
        batch.add_column(sa.Column("consent_signature", sa.String(132), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("consent_signature")
        batch.drop_column("consent_message")
        batch.drop_column("consent")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("deadline")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_index("ix_submissions_session")
        batch.drop_column("wallet_signature")
        batch.drop_column("device_signature")
        batch.drop_column("sample_block")
        batch.drop_column("session")
