"""Feedback: one row per (turn, rater), edited in place; ``rater`` and ``updated_at`` columns.

Rows written before this revision have no rater. Each gets a distinct one,
``legacy:<feedback_id>``, so no row is lost and none collides with another under the new unique
constraint; ``updated_at`` starts at ``created_at``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``rater`` (distinct for legacy rows) and ``updated_at``; unique (turn, rater)."""
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("rater", sa.String(200)))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE feedback SET rater = 'legacy:' || CAST(feedback_id AS VARCHAR(20)), updated_at = created_at"
    )
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column("rater", existing_type=sa.String(200), nullable=False)
        batch.alter_column("updated_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.create_unique_constraint("uq_feedback_turn_rater", ["turn_id", "rater"])


def downgrade() -> None:
    """Drop the rater constraint and columns (rows stay)."""
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint("uq_feedback_turn_rater", type_="unique")
        batch.drop_column("updated_at")
        batch.drop_column("rater")
