"""labeling: selections, pairs, labels (the preference-labeling loop).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three labeling tables (defined in ``labeling/_store.py``)."""
    op.create_table(
        "selections",
        sa.Column("turn_id", sa.String(64), sa.ForeignKey("turns.turn_id"), primary_key=True),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("selected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_selections_selected_at", "selections", ["selected_at"])
    op.create_index("ix_selections_run_id", "selections", ["run_id"])
    op.create_table(
        "pairs",
        sa.Column("pair_id", sa.String(64), primary_key=True),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("response_a", sa.Text, nullable=False),
        sa.Column("response_b", sa.Text, nullable=False),
        sa.Column("a_is_original", sa.Boolean, nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("judge", sa.JSON),
        sa.Column("meta", sa.JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pairs_created_at", "pairs", ["created_at"])
    op.create_index("ix_pairs_updated_at", "pairs", ["updated_at"])
    op.create_table(
        "labels",
        sa.Column("label_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair_id", sa.String(64), sa.ForeignKey("pairs.pair_id"), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("annotator", sa.String(200), nullable=False),
        sa.Column("choice", sa.String(8), nullable=False),
        sa.Column("failure_type", sa.String(32), nullable=False),
        sa.Column("correction", sa.Text),
        sa.Column("labeled_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("pair_id", "backend", "annotator", name="uq_labels_pair_backend_annotator"),
    )
    op.create_index("ix_labels_pair_id", "labels", ["pair_id"])


def downgrade() -> None:
    """Drop the labeling tables (labels first: they reference pairs)."""
    op.drop_index("ix_labels_pair_id", table_name="labels")
    op.drop_table("labels")
    op.drop_index("ix_pairs_updated_at", table_name="pairs")
    op.drop_index("ix_pairs_created_at", table_name="pairs")
    op.drop_table("pairs")
    op.drop_index("ix_selections_run_id", table_name="selections")
    op.drop_index("ix_selections_selected_at", table_name="selections")
    op.drop_table("selections")
