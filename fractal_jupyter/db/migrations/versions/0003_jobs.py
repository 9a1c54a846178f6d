"""jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("workflow_id", sa.Integer(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("slurm_account", sa.Text(), nullable=True),
        sa.Column("project_dump", sa.JSON(), nullable=False),
        sa.Column("workflow_dump", sa.JSON(), nullable=False),
        sa.Column("dataset_dump", sa.JSON(), nullable=False),
        sa.Column("worker_init", sa.Text(), nullable=True),
        sa.Column("working_dir", sa.Text(), nullable=True),
        sa.Column("working_dir_user", sa.Text(), nullable=True),
        sa.Column("first_task_index", sa.Integer(), nullable=False),
        sa.Column("last_task_index", sa.Integer(), nullable=False),
        sa.Column("start_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("runner", sa.String(length=300), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("events_applied", sa.Integer(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflow.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index("ix_job_dataset_status", ["dataset_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_runner"), ["runner"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_workflow_id"), ["workflow_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_workflow_id"))
        batch_op.drop_index(batch_op.f("ix_job_runner"))
        batch_op.drop_index(batch_op.f("ix_job_project_id"))
        batch_op.drop_index(batch_op.f("ix_job_owner"))
        batch_op.drop_index("ix_job_dataset_status")

    op.drop_table("job")
