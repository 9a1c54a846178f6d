"""Alembic environment: migrations run on a connection handed over by `Database.upgrade`."""

from alembic import context

from fractal_jupyter.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("fractal_jupyter migrations run through Database.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
