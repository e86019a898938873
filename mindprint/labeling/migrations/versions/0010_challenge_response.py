"""challenge–response liveness: cues per project, the lease's challenge, devices' cue trials,
devices' decided challenge and rewards held while it is pending

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("challenge_cues", sa.Integer, nullable=False, server_default="0"))
    op.add_column("assignments", sa.Column("challenge", sa.JSON, nullable=True))
    op.create_table(
        "cue_trials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("sample", sa.String(120), nullable=False, index=True),
        sa.Column("n_channels", sa.Integer, nullable=False),
        sa.Column("n_times", sa.Integer, nullable=False),
        sa.Column("sfreq", sa.Float, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cue_trials_device_shape", "cue_trials", ["device", "n_channels", "n_times", "id"])
    op.add_column("devices", sa.Column("challenge", sa.String(8), nullable=True))
    op.add_column("submissions", sa.Column("reward_hold", sa.String(12), nullable=True))
    op.create_index("ix_submissions_reward_hold", "submissions", ["reward_hold"])


def downgrade() -> None:
    op.drop_index("ix_submissions_reward_hold", "submissions")
    op.drop_column("submissions", "reward_hold")
    op.drop_column("devices", "challenge")
    op.drop_index("ix_cue_trials_device_shape", "cue_trials")
    op.drop_table("cue_trials")
    op.drop_column("assignments", "challenge")
    op.drop_column("projects", "challenge_cues")
