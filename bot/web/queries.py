"""What the inspector reads: sessions, transcripts, deliveries and outbox rows, a page at a time.

Blocking SQL over the shared engine (async callers use `asyncio.to_thread`). Every list
is keyset-paged on an indexed order, so a page costs the same on the first and the
thousandth page, and nothing ever loads a whole transcript. Deliveries are read
without their raw headers and body: those carry signatures and tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, and_, func, or_, select

from bot.agents.models import usd
from bot.db.models import Delivery, OutboxItem, SessionInput, SessionRow, TranscriptEvent
from bot.events import ThreadRef

T = TypeVar("T")

PAGE_SESSIONS = 50
PAGE_EVENTS = 200
PAGE_ROWS = 50
LIVE = ("active", "busy", "idle")
CHANGE_PROPOSED = "change_proposed"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows; `older`/`newer` are the cursors of the neighbouring pages."""

    rows: list[T]
    older: str | None = None
    newer: str | None = None


@dataclass(frozen=True)
class SessionLine:
    """A session as a row of the sessions list."""

    id: str
    created_at: datetime
    state: str
    close_reason: str | None
    closed_by: str | None
    agent_id: str
    host: str
    repo: str
    thread: ThreadRef
    turns: int
    started_by: str
    parent_id: str | None
    tokens_in: int
    tokens_out: int
    cache_read_tokens: int = 0  # of tokens_in
    cache_write_tokens: int = 0  # of tokens_in
    cost_micros: int = 0  # US$ 1e-6, from the price table

    @property
    def cost_usd(self) -> str:
        return usd(self.cost_micros)

    resumed_from: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "state": self.state,
            "close_reason": self.close_reason,
            "closed_by": self.closed_by,
            "agent": self.agent_id,
            "host": self.host,
            "repo": self.repo,
            "thread": self.thread.key,
            "turns": self.turns,
            "started_by": self.started_by,
            "parent_id": self.parent_id,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": self.cost_usd,
            "resumed_from": self.resumed_from,
        }


@dataclass(frozen=True)
class SessionDetail:
    """Everything the session page shows, but its transcript."""

    line: SessionLine
    task: str
    output: str | None
    options: dict[str, Any]
    spec: dict[str, Any] | None
    progress: dict[str, Any]
    updated_at: datetime
    closed_at: datetime | None
    time_limit_at: datetime
    idle_deadline_at: datetime | None
    lifetime_at: datetime
    extended_minutes: float
    completed: bool
    delegations: int
    installation_id: int | None
    trigger_comment_id: str | None
    parent: SessionLine | None
    children: list[SessionLine]
    event_count: int
    change_sets: int
    launched: dict[str, Any] = field(default_factory=dict)  # the launch event's data
    resumed_by: str | None = None  # the later session that took this one up again

    @property
    def live(self) -> bool:
        return self.line.state in LIVE


@dataclass(frozen=True)
class EventRow:
    id: int
    at: datetime
    kind: str
    data: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "kind": self.kind, "data": self.data}


@dataclass(frozen=True)
class EventPage:
    """A window of a transcript: `events` in order, and whether more lie either side."""

    events: list[EventRow]
    has_before: bool
    has_after: bool
    total: int
    position: int  # how many events come before the first one shown


@dataclass(frozen=True)
class DeliveryLine:
    id: int
    host: str
    delivery_id: str
    event: str
    action: str | None
    status: str
    attempts: int
    received_at: datetime
    finished_at: datetime | None
    note: str | None
    last_error: str | None


@dataclass(frozen=True)
class OutboxLine:
    id: int
    key: str
    host: str
    repo: str
    thread_key: str
    kind: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    url: str | None


@dataclass(frozen=True)
class InputLine:
    id: int
    kind: str
    author: str
    body: str
    url: str | None
    status: str
    turn: int | None
    created_at: datetime


_LINE_COLUMNS = (
    SessionRow.id,
    SessionRow.created_at,
    SessionRow.state,
    SessionRow.close_reason,
    SessionRow.closed_by,
    SessionRow.agent_id,
    SessionRow.host,
    SessionRow.repo,
    SessionRow.thread,
    SessionRow.turns,
    SessionRow.started_by,
    SessionRow.parent_id,
    SessionRow.tokens_in,
    SessionRow.tokens_out,
    SessionRow.cache_read_tokens,
    SessionRow.cache_write_tokens,
    SessionRow.cost_micros,
    SessionRow.resumed_from,
)


def _line(row: Any) -> SessionLine:
    return SessionLine(
        id=row.id,
        created_at=row.created_at,
        state=row.state,
        close_reason=row.close_reason,
        closed_by=row.closed_by,
        agent_id=row.agent_id,
        host=row.host,
        repo=row.repo,
        thread=ThreadRef(**row.thread),
        turns=row.turns,
        started_by=row.started_by,
        parent_id=row.parent_id,
        tokens_in=row.tokens_in or 0,
        tokens_out=row.tokens_out or 0,
        cache_read_tokens=row.cache_read_tokens or 0,
        cache_write_tokens=row.cache_write_tokens or 0,
        cost_micros=row.cost_micros or 0,
        resumed_from=row.resumed_from,
    )


class BadCursor(ValueError):
    """A paging cursor that is not one of ours."""


def session_cursor(line: SessionLine) -> str:
    return f"{line.created_at.isoformat()}~{line.id}"


def _parse_session_cursor(text: str) -> tuple[datetime, str]:
    stamp, sep, sid = text.rpartition("~")
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        raise BadCursor(text) from None
    if not sep or not sid or when.tzinfo is None:
        raise BadCursor(text)
    return when, sid


def _int_cursor(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit() or len(text) > 18:
        raise BadCursor(text)
    return int(text)


class Reads:
    """The inspector's queries over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ sessions

    def sessions(
        self,
        *,
        state: str | None = None,
        repo: str | None = None,
        agent: str | None = None,
        before: str | None = None,
        after: str | None = None,
        limit: int = PAGE_SESSIONS,
        repos: Sequence[str] | None = None,
    ) -> Page[SessionLine]:
        """Newest first. `before` pages to older sessions, `after` back to newer ones.
        `repos` (a token's limit) keeps only sessions in those repositories."""
        query = select(*_LINE_COLUMNS)
        if repos is not None:
            query = query.where(SessionRow.repo.in_(list(repos)))
        if state == "live":
            query = query.where(SessionRow.state.in_(LIVE))
        elif state:
            query = query.where(SessionRow.state == state)
        if repo:
            query = query.where(SessionRow.repo == repo)
        if agent:
            query = query.where(SessionRow.agent_id == agent)
        newest_first = after is None
        if before is not None:
            when, sid = _parse_session_cursor(before)
            query = query.where(
                or_(
                    SessionRow.created_at < when,
                    and_(SessionRow.created_at == when, SessionRow.id < sid),
                )
            )
        if after is not None:
            when, sid = _parse_session_cursor(after)
            query = query.where(
                or_(
                    SessionRow.created_at > when,
                    and_(SessionRow.created_at == when, SessionRow.id > sid),
                )
            )
        if newest_first:
            query = query.order_by(SessionRow.created_at.desc(), SessionRow.id.desc())
        else:
            query = query.order_by(SessionRow.created_at.asc(), SessionRow.id.asc())
        with self.engine.connect() as conn:
            rows = [_line(r) for r in conn.execute(query.limit(limit + 1))]
        more = len(rows) > limit
        rows = rows[:limit]
        if not newest_first:
            rows.reverse()
        if not rows:
            return Page([])
        first, last = session_cursor(rows[0]), session_cursor(rows[-1])
        if newest_first:
            return Page(rows, older=last if more else None, newer=first if before else None)
        return Page(rows, older=last, newer=first if more else None)

    def filter_choices(self) -> tuple[list[str], list[str]]:
        """The repositories and agents sessions exist for (for the filter menus)."""
        with self.engine.connect() as conn:
            repos = conn.execute(
                select(SessionRow.repo).distinct().order_by(SessionRow.repo).limit(500)
            ).scalars()
            repo_list = [str(r) for r in repos]
            agents = conn.execute(
                select(SessionRow.agent_id).distinct().order_by(SessionRow.agent_id).limit(500)
            ).scalars()
            return repo_list, [str(a) for a in agents]

    def session(self, session_id: str) -> SessionDetail | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    *_LINE_COLUMNS,
                    SessionRow.task,
                    SessionRow.output,
                    SessionRow.options,
                    SessionRow.spec,
                    SessionRow.progress,
                    SessionRow.updated_at,
                    SessionRow.closed_at,
                    SessionRow.time_limit_at,
                    SessionRow.idle_deadline_at,
                    SessionRow.lifetime_at,
                    SessionRow.extended_minutes,
                    SessionRow.completed,
                    SessionRow.delegations,
                    SessionRow.installation_id,
                    SessionRow.trigger_comment_id,
                ).where(SessionRow.id == session_id)
            ).first()
            if row is None:
                return None
            line = _line(row)
            parent = None
            if line.parent_id:
                found = conn.execute(
                    select(*_LINE_COLUMNS).where(SessionRow.id == line.parent_id)
                ).first()
                parent = _line(found) if found else None
            children = [
                _line(r)
                for r in conn.execute(
                    select(*_LINE_COLUMNS)
                    .where(SessionRow.parent_id == session_id)
                    .order_by(SessionRow.created_at, SessionRow.id)
                    .limit(200)
                )
            ]
            resumed_by = conn.execute(
                select(SessionRow.id)
                .where(SessionRow.resumed_from == session_id)
                .order_by(SessionRow.created_at)
                .limit(1)
            ).scalar_one_or_none()
            of_session = TranscriptEvent.session_id == session_id
            count = conn.execute(
                select(func.count()).select_from(TranscriptEvent).where(of_session)
            ).scalar_one()
            changes = conn.execute(
                select(func.count())
                .select_from(TranscriptEvent)
                .where(of_session, TranscriptEvent.kind == CHANGE_PROPOSED)
            ).scalar_one()
            launched = conn.execute(
                select(TranscriptEvent.data)
                .where(of_session, TranscriptEvent.kind == "launched")
                .order_by(TranscriptEvent.id)
                .limit(1)
            ).scalar_one_or_none()
        return SessionDetail(
            line=line,
            task=row.task,
            output=row.output,
            options=dict(row.options or {}),
            spec=dict(row.spec) if row.spec else None,
            progress=dict(row.progress or {}),
            updated_at=row.updated_at,
            closed_at=row.closed_at,
            time_limit_at=row.time_limit_at,
            idle_deadline_at=row.idle_deadline_at,
            lifetime_at=row.lifetime_at,
            extended_minutes=row.extended_minutes or 0.0,
            completed=bool(row.completed),
            delegations=row.delegations or 0,
            installation_id=row.installation_id,
            trigger_comment_id=row.trigger_comment_id,
            parent=parent,
            children=children,
            event_count=int(count),
            change_sets=int(changes),
            launched=dict(launched or {}),
            resumed_by=resumed_by,
        )

    def state(self, session_id: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(SessionRow.state).where(SessionRow.id == session_id)
            ).scalar_one_or_none()
            return str(found) if found is not None else None

    def inputs(self, session_id: str, *, limit: int = 200) -> list[InputLine]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    SessionInput.id,
                    SessionInput.kind,
                    SessionInput.author,
                    SessionInput.body,
                    SessionInput.url,
                    SessionInput.status,
                    SessionInput.turn,
                    SessionInput.created_at,
                )
                .where(SessionInput.session_id == session_id)
                .order_by(SessionInput.id)
                .limit(limit)
            )
            return [InputLine(*r) for r in rows]

    # ---------------------------------------------------------------- transcripts

    def events(
        self,
        session_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        last: bool = False,
        limit: int = PAGE_EVENTS,
        kinds: Sequence[str] | None = None,
    ) -> EventPage:
        """A page of the transcript: the first, the one `after` an id, the one `before`
        an id, or the `last`."""
        of_session = TranscriptEvent.session_id == session_id
        query = select(
            TranscriptEvent.id, TranscriptEvent.at, TranscriptEvent.kind, TranscriptEvent.data
        ).where(of_session)
        if kinds:
            of_session = and_(of_session, TranscriptEvent.kind.in_(kinds))
            query = query.where(TranscriptEvent.kind.in_(kinds))
        backwards = before is not None or last
        if after is not None:
            query = query.where(TranscriptEvent.id > after)
        if before is not None:
            query = query.where(TranscriptEvent.id < before)
        order = TranscriptEvent.id.desc() if backwards else TranscriptEvent.id.asc()
        with self.engine.connect() as conn:
            rows = [
                EventRow(r.id, r.at, r.kind, dict(r.data or {}))
                for r in conn.execute(query.order_by(order).limit(limit + 1))
            ]
            more = len(rows) > limit
            rows = rows[:limit]
            if backwards:
                rows.reverse()
            total = conn.execute(
                select(func.count()).select_from(TranscriptEvent).where(of_session)
            ).scalar_one()
            if rows:
                position = conn.execute(
                    select(func.count())
                    .select_from(TranscriptEvent)
                    .where(of_session, TranscriptEvent.id < rows[0].id)
                ).scalar_one()
            else:
                position = int(total) if (after is not None or last) else 0
        if backwards:
            has_before, has_after = more, position + len(rows) < total
        else:
            has_before, has_after = position > 0, more
        return EventPage(rows, has_before, has_after, int(total), int(position))

    def events_after(self, session_id: str, after: int, *, limit: int = 200) -> list[EventRow]:
        """New events since `after`, for the live stream (no counting)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    TranscriptEvent.id,
                    TranscriptEvent.at,
                    TranscriptEvent.kind,
                    TranscriptEvent.data,
                )
                .where(TranscriptEvent.session_id == session_id, TranscriptEvent.id > after)
                .order_by(TranscriptEvent.id)
                .limit(limit)
            )
            return [EventRow(r.id, r.at, r.kind, dict(r.data or {})) for r in rows]

    def last_event_id(self, session_id: str) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(func.max(TranscriptEvent.id)).where(TranscriptEvent.session_id == session_id)
            ).scalar()
            return int(found or 0)

    # ------------------------------------------------------- deliveries and writes

    def deliveries(
        self,
        *,
        status: str | None = None,
        host: str | None = None,
        before: str | None = None,
        limit: int = PAGE_ROWS,
    ) -> Page[DeliveryLine]:
        """Newest first, without headers or body (signatures and tokens live there)."""
        query = select(
            Delivery.id,
            Delivery.host,
            Delivery.delivery_id,
            Delivery.event,
            Delivery.action,
            Delivery.status,
            Delivery.attempts,
            Delivery.received_at,
            Delivery.finished_at,
            Delivery.note,
            Delivery.last_error,
        )
        if status:
            query = query.where(Delivery.status == status)
        if host:
            query = query.where(Delivery.host == host)
        start = _int_cursor(before)
        if start is not None:
            query = query.where(Delivery.id < start)
        with self.engine.connect() as conn:
            rows = [
                DeliveryLine(*r)
                for r in conn.execute(query.order_by(Delivery.id.desc()).limit(limit + 1))
            ]
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, older=str(rows[-1].id) if more and rows else None)

    def outbox(
        self, *, status: str | None = None, before: str | None = None, limit: int = PAGE_ROWS
    ) -> Page[OutboxLine]:
        query = select(
            OutboxItem.id,
            OutboxItem.key,
            OutboxItem.host,
            OutboxItem.repo,
            OutboxItem.thread_key,
            OutboxItem.kind,
            OutboxItem.status,
            OutboxItem.attempts,
            OutboxItem.created_at,
            OutboxItem.sent_at,
            OutboxItem.last_error,
            OutboxItem.result,
        )
        if status:
            query = query.where(OutboxItem.status == status)
        start = _int_cursor(before)
        if start is not None:
            query = query.where(OutboxItem.id < start)
        with self.engine.connect() as conn:
            found = list(conn.execute(query.order_by(OutboxItem.id.desc()).limit(limit + 1)))
        more = len(found) > limit
        rows = []
        for r in found[:limit]:
            url = (r.result or {}).get("url") if isinstance(r.result, dict) else None
            rows.append(
                OutboxLine(
                    r.id,
                    r.key,
                    r.host,
                    r.repo,
                    r.thread_key,
                    r.kind,
                    r.status,
                    r.attempts,
                    r.created_at,
                    r.sent_at,
                    r.last_error,
                    url if isinstance(url, str) else None,
                )
            )
        return Page(rows, older=str(rows[-1].id) if more and rows else None)
