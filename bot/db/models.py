"""SQLAlchemy models: the tables every process shares."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON

from bot.db.types import BigId, UtcDateTime


class Base(DeclarativeBase):
    pass


class Delivery(Base):
    """One webhook request, stored raw before it was acknowledged."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("host", "delivery_id", name="uq_deliveries_host_delivery_id"),
        Index("ix_deliveries_claimable", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # pending -> processing -> done | ignored | failed (pending again between retries)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)


class CommentRecord(Base):
    """A normalized comment event, kept so sessions can find a thread's history."""

    __tablename__ = "comment_events"
    __table_args__ = (
        UniqueConstraint("delivery_pk", name="uq_comment_events_delivery"),
        Index("ix_comment_events_thread", "thread_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_pk: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(16))
    repo: Mapped[str] = mapped_column(String(255))
    thread_key: Mapped[str] = mapped_column(String(400))
    action: Mapped[str] = mapped_column(String(16))
    comment_id: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
