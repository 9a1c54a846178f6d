"""users: groups, the default group "All", per-user settings

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DEFAULT_GROUP = "All"


def upgrade() -> None:
    op.create_table(
        "user_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("timestamp_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("viewer_paths", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "link_user_group",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["user_group.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    with op.batch_alter_table("link_user_group", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_user_group_user_id"), ["user_id"], unique=False)
    op.create_table(
        "user_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("slurm_accounts", sa.JSON(), nullable=False),
        sa.Column("slurm_user", sa.Text(), nullable=True),
        sa.Column("cache_dir", sa.Text(), nullable=True),
        sa.Column("ssh_host", sa.Text(), nullable=True),
        sa.Column("ssh_username", sa.Text(), nullable=True),
        sa.Column("ssh_private_key_path", sa.Text(), nullable=True),
        sa.Column("ssh_tasks_dir", sa.Text(), nullable=True),
        sa.Column("ssh_jobs_dir", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id"),
    )
    # Users seen before this revision join the default group and get empty settings, as
    # fractal-server does for every new user.
    op.execute(
        sa.text(
            "INSERT INTO user_group (name, timestamp_created, viewer_paths) "
            "VALUES (:name, CURRENT_TIMESTAMP, '[]')"
        ).bindparams(name=DEFAULT_GROUP)
    )
    op.execute(
        sa.text(
            "INSERT INTO link_user_group (group_id, user_id) "
            "SELECT user_group.id, user_account.id FROM user_group, user_account "
            "WHERE user_group.name = :name"
        ).bindparams(name=DEFAULT_GROUP)
    )
    op.execute(
        "INSERT INTO user_settings (user_id, slurm_accounts) SELECT id, '[]' FROM user_account"
    )


def downgrade() -> None:
    op.drop_table("user_settings")
    with op.batch_alter_table("link_user_group", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_user_group_user_id"))
    op.drop_table("link_user_group")
    op.drop_table("user_group")
