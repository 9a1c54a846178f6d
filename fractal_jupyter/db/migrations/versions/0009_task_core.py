"""core tasks and pre-pins: fractal-server 2.26's `task.is_core` and 2.9's
`task_group.pinned_package_versions_pre`

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

Existing tasks are not core (an administrator makes a group's tasks core); existing groups
have no pins installed before their package (`{}`, as the other pins column of a group
without pins). Both columns are NOT NULL with a server default, so that the existing rows
get it. Not a batch for `task` (a copy of `task` on SQLite): other tables' foreign keys
point at `task`, and SQLite adds a column with a constant default in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "task",
        sa.Column("is_core", sa.Boolean(), nullable=False, server_default="0"),
    )
    op.add_column(
        "task_group",
        sa.Column("pinned_package_versions_pre", sa.JSON(), nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    with op.batch_alter_table("task_group", schema=None) as batch_op:
        batch_op.drop_column("pinned_package_versions_pre")
    op.drop_column("task", "is_core")
