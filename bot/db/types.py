"""Column types shared by the models and the migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; BIGINT elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite keeps no zone, so values are stored as naive UTC and given their zone back on
    the way out; naive datetimes are refused on the way in so local times never sneak in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got {value!r}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_text(value: Any) -> str:
    """What `UtcDateTime` stores on SQLite for `value`, in one step: the naive UTC time
    as SQLAlchemy's SQLite DATETIME writes it ("2026-12-05 19:58:34.123456", microseconds
    always). `bot.db.lean` binds timestamps with it; it refuses what the type refuses."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware, got {value!r}")
    moment: datetime = value if value.tzinfo is UTC else value.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(" ", "microseconds")
