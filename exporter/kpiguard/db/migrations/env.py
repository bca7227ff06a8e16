"""Alembic environment: runs on the connection kpiguard.db.migrate hands it."""

from alembic import context

from kpiguard.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations with `kpiguard db upgrade`, which provides the connection")

# render_as_batch lets ALTERs work on SQLite, which rebuilds tables to change them.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
