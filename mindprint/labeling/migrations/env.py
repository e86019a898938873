"""Alembic environment: runs on the connection handed over by ``store.migrate``."""

from __future__ import annotations

from alembic import context

from mindprint.labeling.store import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the CLI path
    from mindprint.labeling.store import make_engine

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///platform.db"
    connection = make_engine(url).connect()
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
