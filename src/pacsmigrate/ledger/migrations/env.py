"""Alembic environment: run by pacsmigrate.ledger.db.upgrade() with a live connection."""

from __future__ import annotations

from alembic import context

from pacsmigrate.ledger.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # e.g. 'alembic revision --autogenerate' from a developer's shell
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite needs batch mode for ALTER TABLE
)
with context.begin_transaction():
    context.run_migrations()
