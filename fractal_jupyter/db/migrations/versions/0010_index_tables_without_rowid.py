"""the image index tables without a rowid (SQLite)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

`image_attribute` and `image_type` are looked up by their primary key (image_id, key) or by
their lookup index, never by a rowid. As ordinary SQLite tables each row went into three
B-trees (the rowid table, the primary key's index, the lookup index); `WITHOUT ROWID` the
table is its primary key's B-tree, which spares an import of 100,000 images a third of its
index writes. SQLite cannot change this in place: each table is copied into a new one (a
batch with `recreate="always"`), its rows and lookup index kept. PostgreSQL has no rowid:
nothing to do there.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEX_TABLES = ("image_attribute", "image_type")


def _recreate(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in INDEX_TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}
        ):
            pass


def upgrade() -> None:
    _recreate(with_rowid=False)


def downgrade() -> None:
    _recreate(with_rowid=True)
