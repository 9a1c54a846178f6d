"""tasks, workflows and workflow tasks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("command_non_parallel", sa.Text(), nullable=True),
        sa.Column("command_parallel", sa.Text(), nullable=True),
        sa.Column("meta_non_parallel", sa.JSON(), nullable=False),
        sa.Column("meta_parallel", sa.JSON(), nullable=False),
        sa.Column("args_schema_non_parallel", sa.JSON(), nullable=True),
        sa.Column("args_schema_parallel", sa.JSON(), nullable=True),
        sa.Column("args_schema_version", sa.Text(), nullable=True),
        sa.Column("docs_info", sa.Text(), nullable=True),
        sa.Column("docs_link", sa.Text(), nullable=True),
        sa.Column("input_types", sa.JSON(), nullable=False),
        sa.Column("output_types", sa.JSON(), nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("modality", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("authors", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source"),
    )
    op.create_table(
        "workflow",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("timestamp_created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uq_workflow_project_name"),
    )
    with op.batch_alter_table("workflow", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workflow_project_id"), ["project_id"], unique=False)

    op.create_table(
        "workflow_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("order", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("task_type", sa.String(length=32), nullable=False),
        sa.Column("meta_non_parallel", sa.JSON(), nullable=True),
        sa.Column("meta_parallel", sa.JSON(), nullable=True),
        sa.Column("args_non_parallel", sa.JSON(), nullable=True),
        sa.Column("args_parallel", sa.JSON(), nullable=True),
        sa.Column("input_filters", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["task.id"],
        ),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflow.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("workflow_task", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workflow_task_task_id"), ["task_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_workflow_task_workflow_id"), ["workflow_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("workflow_task", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_task_workflow_id"))
        batch_op.drop_index(batch_op.f("ix_workflow_task_task_id"))

    op.drop_table("workflow_task")
    with op.batch_alter_table("workflow", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_project_id"))

    op.drop_table("workflow")
    op.drop_table("task")
