"""Conversations get an owner and a title; turns get verified citations, gate, language, retry link, flags.

All columns are nullable: rows written before this revision keep their values and read as
"unknown" (no owner, no verified citations, language not detected).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the owner/title columns to ``conversations`` and the trust columns to ``turns``."""
    op.add_column("conversations", sa.Column("user_id", sa.String(200)))
    op.add_column("conversations", sa.Column("title", sa.Text))
    op.add_column("conversations", sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.create_index("ix_conversations_user_id", "conversations", ["user_id"])
    op.add_column("turns", sa.Column("citations", sa.JSON))
    op.add_column("turns", sa.Column("gate", sa.String(32)))
    op.add_column("turns", sa.Column("language", sa.String(16)))
    op.add_column("turns", sa.Column("retry_of", sa.String(64)))
    op.add_column("turns", sa.Column("flags", sa.JSON))
    op.create_index("ix_turns_retry_of", "turns", ["retry_of"])


def downgrade() -> None:
    """Drop the columns added by :func:`upgrade` (their values are lost; every row stays).

    Plain ``DROP COLUMN`` (SQLite >= 3.35 and PostgreSQL both have it): a batch "move and copy"
    would drop and recreate ``turns``, which the feedback and labeling tables reference.
    """
    op.drop_index("ix_turns_retry_of", table_name="turns")
    for name in ("flags", "retry_of", "language", "gate", "citations"):
        op.execute(f"ALTER TABLE turns DROP COLUMN {name}")
    op.drop_index("ix_conversations_user_id", table_name="conversations")
    for name in ("updated_at", "title", "user_id"):
        op.execute(f"ALTER TABLE conversations DROP COLUMN {name}")
