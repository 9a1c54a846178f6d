"""initial schema: users, projects, datasets, images

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("timestamp_created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_superuser", sa.Boolean(), nullable=False),
        sa.Column("is_verified", sa.Boolean(), nullable=False),
        sa.Column("timestamp_created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "dataset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("zarr_dir", sa.Text(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("timestamp_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("image_count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_project_id"), ["project_id"], unique=False)

    op.create_table(
        "link_user_project",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "user_id"),
    )
    with op.batch_alter_table("link_user_project", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_user_project_user_id"), ["user_id"], unique=False)

    op.create_table(
        "attribute_summary",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value_key", sa.Text(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "key", "value_key"),
    )
    op.create_table(
        "image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("zarr_url", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("types", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "zarr_url", name="uq_image_dataset_zarr_url"),
    )
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.create_index("ix_image_dataset_order", ["dataset_id", "id"], unique=False)

    op.create_table(
        "type_summary",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.Column("true_count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "key"),
    )
    op.create_table(
        "image_attribute",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("value_key", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "key"),
    )
    with op.batch_alter_table("image_attribute", schema=None) as batch_op:
        batch_op.create_index(
            "ix_image_attribute_lookup",
            ["dataset_id", "key", "value_key", "image_id"],
            unique=False,
        )

    op.create_table(
        "image_type",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "key"),
    )
    with op.batch_alter_table("image_type", schema=None) as batch_op:
        batch_op.create_index(
            "ix_image_type_lookup", ["dataset_id", "key", "value", "image_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("image_type", schema=None) as batch_op:
        batch_op.drop_index("ix_image_type_lookup")

    op.drop_table("image_type")
    with op.batch_alter_table("image_attribute", schema=None) as batch_op:
        batch_op.drop_index("ix_image_attribute_lookup")

    op.drop_table("image_attribute")
    op.drop_table("type_summary")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index("ix_image_dataset_order")

    op.drop_table("image")
    op.drop_table("attribute_summary")
    with op.batch_alter_table("link_user_project", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_user_project_user_id"))

    op.drop_table("link_user_project")
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_project_id"))

    op.drop_table("dataset")
    op.drop_table("user_account")
    op.drop_table("project")
