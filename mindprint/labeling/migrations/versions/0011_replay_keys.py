"""the replay index's lookup table: SimHash keys of accepted samples' fingerprints, filled
from the fingerprints already stored

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replay_keys",
        sa.Column("key", sa.BigInteger, primary_key=True),
        sa.Column("fingerprint", sa.BigInteger, primary_key=True),
        sqlite_with_rowid=False,
    )
    from mindprint.platform.replay import backfill_keys

    backfill_keys(op.get_bind())


def downgrade() -> None:
    op.drop_table("replay_keys")
