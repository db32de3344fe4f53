"""Rewards indexed in the order listings page through them: ``ix_reward_program`` on
``(program_id, id)``.

Every listing of rewards is a page now, by program and then reward id, after a cursor; on
``program_id`` alone the database sorted all of a program's rewards (or every reward) for each
page. With the reward id in the index a page is read in index order and stops at its size.

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_reward_program", table_name="reward")
    op.create_index("ix_reward_program", "reward", ["program_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_reward_program", table_name="reward")
    op.create_index("ix_reward_program", "reward", ["program_id"])
