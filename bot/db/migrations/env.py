"""Alembic environment: runs against the engine `bot.db.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from bot.db.migrate import include_name
from bot.db.models import Base

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()
