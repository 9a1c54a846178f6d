"""workflow description: fractal-server 2.26's free text about a workflow

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

A nullable column: existing workflows have no description. Not a batch (a copy of
`workflow` on SQLite): other tables' foreign keys point at `workflow`, and SQLite adds a
nullable column in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflow", sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("workflow", "description")
