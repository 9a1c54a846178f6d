"""history: runs, units, each image's latest status per workflow task; job filters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attribute_filters", sa.JSON(), server_default="{}", nullable=False)
        )
        batch_op.add_column(
            sa.Column("type_filters", sa.JSON(), server_default="{}", nullable=False)
        )
        batch_op.add_column(sa.Column("executor_error_log", sa.Text(), nullable=True))
    op.create_table(
        "history_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("workflowtask_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("workflowtask_dump", sa.JSON(), nullable=False),
        sa.Column("task_dump", sa.JSON(), nullable=False),
        sa.Column("timestamp_started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("num_available_images", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["workflowtask_id"], ["workflow_task.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("history_run", schema=None) as batch_op:
        batch_op.create_index(
            "ix_history_run_dataset_wftask", ["dataset_id", "workflowtask_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_history_run_job_id"), ["job_id"], unique=False)
    op.create_table(
        "history_unit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("history_run_id", sa.Integer(), nullable=False),
        sa.Column("logfile", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("zarr_urls", sa.JSON(), nullable=False),
        sa.Column("has_warnings", sa.Boolean(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["history_run_id"], ["history_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("history_unit", schema=None) as batch_op:
        batch_op.create_index(
            "ix_history_unit_run_status", ["history_run_id", "status", "id"], unique=False
        )
        batch_op.create_index(
            "ix_history_unit_run_logfile", ["history_run_id", "logfile"], unique=False
        )
    op.create_table(
        "image_status",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("workflowtask_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("latest_history_unit_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["latest_history_unit_id"], ["history_unit.id"], ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["workflowtask_id"], ["workflow_task.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "workflowtask_id"),
    )
    with op.batch_alter_table("image_status", schema=None) as batch_op:
        batch_op.create_index(
            "ix_image_status_lookup",
            ["dataset_id", "workflowtask_id", "status", "image_id"],
            unique=False,
        )
    op.create_table(
        "image_status_summary",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("workflowtask_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workflowtask_id"], ["workflow_task.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "workflowtask_id", "status"),
    )


def downgrade() -> None:
    op.drop_table("image_status_summary")
    op.drop_table("image_status")
    op.drop_table("history_unit")
    op.drop_table("history_run")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("executor_error_log")
        batch_op.drop_column("type_filters")
        batch_op.drop_column("attribute_filters")
