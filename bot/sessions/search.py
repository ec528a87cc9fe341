"""Sessions as other sessions see them: list, history, full-text search, send target (blocking SQL).

A session's key is `agent_id:thread_key` (`reviewer:github:octo/app/pulls/12`); several
sessions may share a key over time (closed ones, at most one live), and each is also
addressable by its id. What an agent may see and reach is its `AccessPolicy`; every
filter runs in SQL, before any LIMIT, so a hidden session never takes a visible one's place.

Search runs on the transcript's `search_text` column: SQLite FTS5 (`transcript_fts`,
bm25 ranking, `snippet()`), or PostgreSQL full-text search (`websearch_to_tsquery`,
`ts_rank`, `ts_headline`). On both, the query is read the way web search boxes read it:
words must all appear, `"a phrase"` must appear as written, `or` between words offers
alternatives, `-word` leaves out events with that word. Nothing a user types can break the
query syntax: on SQLite every word is re-quoted before FTS5 sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    and_,
    bindparam,
    false,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    true,
)
from sqlalchemy.orm import Session

from bot.agents.base import SessionAccess
from bot.db.models import LIVE_STATES, SessionRow, TranscriptEvent

SESSION_ID = re.compile(r"s-[0-9a-z]{1,14}")
MAX_LIST = 100
MAX_HISTORY = 200
MAX_SEARCH = 50
TASK_PREVIEW = 200  # characters of a session's task shown by `list`
SNIPPET_WORDS = 16  # about how many words a search snippet shows
MARK = "**"  # around the matched words in a snippet
ELLIPSIS = "…"
# Longer texts are indexed up to here: enough to find an event, and well inside
# PostgreSQL's 1 MB limit on one tsvector (an insert past it would fail).
MAX_SEARCH_TEXT = 32_000
# Search ranks the newest this-many visible matching events (all of them, for any query
# that matches fewer), so a word found everywhere costs a bounded time (bench/search.py).
SQLITE_RANK_WINDOW = 2000
POSTGRES_RANK_WINDOW = 500

NOT_VISIBLE = "no session {target!r} is visible to this agent"
SEND_REFUSED = "this agent may not send to other sessions (its access policy has can_send = false)"
BAD_LIMIT = "{name} must be at least {least}; got {got}"


class SessionAccessError(Exception):
    """A session tool's request that cannot be met; the message is for the agent."""


class UnknownSession(SessionAccessError):
    """No such session, or one the policy hides: the two are told apart nowhere, so an
    agent cannot learn that a hidden session exists."""


# The name the tools' callers think in; one class, so no handler can tell the cases apart.
NotVisible = UnknownSession


class SendRefused(SessionAccessError):
    """The caller's policy forbids sessions_send."""


def session_key(agent_id: str, thread_key: str) -> str:
    return f"{agent_id}:{thread_key}"


def split_key(key: str) -> tuple[str, str] | None:
    """`agent_id:thread_key` apart; agent ids never hold a colon (bot/agents/config.py)."""
    agent_id, colon, thread_key = key.partition(":")
    return (agent_id, thread_key) if colon and agent_id and thread_key else None


# An agent's `sessionAccess` (bot/agents/base.py); None where one is taken: no policy,
# everything visible and sendable.
AccessPolicy = SessionAccess


def visible_clause(policy: AccessPolicy | None, caller_agent_id: str) -> ColumnElement[bool]:
    """`AccessPolicy.visible` as a WHERE clause over `sessions`."""
    if policy is None:
        return true()
    own: list[ColumnElement[bool]] = []
    if not policy.cross_agent:
        own.append(SessionRow.agent_id == caller_agent_id)
    if policy.key_prefix:
        own.append(_key_starts_with(policy.key_prefix))
    clause: ColumnElement[bool] = and_(true(), *own)
    listed = [_key_is(key) for key in policy.allowed_keys]
    return or_(clause, *listed) if listed else clause


def _key_starts_with(prefix: str) -> ColumnElement[bool]:
    # substr, not LIKE: SQLite's LIKE ignores case, and a prefix may hold % or _.
    parts = prefix.partition(":")
    if not parts[1]:
        return func.substr(SessionRow.agent_id, 1, len(prefix)) == prefix
    agent_id, thread_prefix = parts[0], parts[2]
    match_agent = SessionRow.agent_id == agent_id
    if not thread_prefix:
        return match_agent
    return and_(
        match_agent, func.substr(SessionRow.thread_key, 1, len(thread_prefix)) == thread_prefix
    )


def _key_is(key: str) -> ColumnElement[bool]:
    parts = split_key(key)
    if parts is None:
        return false()
    return and_(SessionRow.agent_id == parts[0], SessionRow.thread_key == parts[1])


def _addressed(key_or_id: str) -> ColumnElement[bool]:
    if SESSION_ID.fullmatch(key_or_id):
        return SessionRow.id == key_or_id
    return _key_is(key_or_id)


def _check_limit(name: str, value: int, least: int) -> None:
    if value < least:
        raise ValueError(BAD_LIMIT.format(name=name, least=least, got=value))


def _iso(at: datetime) -> str:
    return at.isoformat()


def _preview(task: str) -> str:
    return task if len(task) <= TASK_PREVIEW else task[: TASK_PREVIEW - 1] + ELLIPSIS


# ------------------------------------------------------------------ search text

# Which events hold words worth finding, and in which data fields. Everything else is
# bookkeeping (state changes, writes, timers, turn boundaries, streamed pieces of text that
# a `message` repeats whole) and gets no search text.
SEARCHED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "launched": ("task",),  # the task as given (a delegation's task, for a child session)
    "input": ("body",),  # a comment or an operator's message fed to the agent
    "input_amended": ("body",),
    "message": ("text",),  # what the agent said
    "tool_result": ("content",),
}
# In a tool call, the arguments that are the agent's own words: a reply's or a review
# thread's body, the final output, a delegated task, a message to another session.
SEARCHED_ARGS = ("body", "output", "task", "message", "summary")
# A delegation's own events (`delegation...`), whatever their suffix: its task and output.
DELEGATION_FIELDS = ("task", "output")
# Results of tools that read other sessions or the agent's memory are copies of text
# indexed where it came from; indexing them again would make every search echo itself.
COPYING_TOOLS = ("sessions_", "memory_")


def search_text_for(kind: str, data: Mapping[str, Any]) -> str | None:
    """The words of a transcript event worth finding later, or None for bookkeeping."""
    if kind == "tool_call":
        args = data.get("args")
        found = _texts(args, SEARCHED_ARGS) if isinstance(args, Mapping) else []
    elif kind == "tool_result" and str(data.get("tool") or "").startswith(COPYING_TOOLS):
        return None
    elif kind in SEARCHED_FIELDS:
        found = _texts(data, SEARCHED_FIELDS[kind])
    elif kind.startswith("delegat"):
        found = _texts(data, DELEGATION_FIELDS)
    else:
        return None
    joined = "\n".join(found).strip()
    return joined[:MAX_SEARCH_TEXT] if joined else None


def _texts(data: Mapping[str, Any], fields: tuple[str, ...]) -> list[str]:
    # PostgreSQL's text type cannot hold NUL, which a comment body may carry.
    found = (v.replace("\x00", "") for f in fields if isinstance(v := data.get(f), str))
    return [v for v in found if v.strip()]


# ------------------------------------------------------------------ query text

# A quoted phrase (the closing quote may be missing), or a run of anything else.
_QUERY_PART = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD = re.compile(r"\w+")


def fts5_query(query: str) -> str | None:
    """The user's words as an FTS5 query, read like `websearch_to_tsquery` reads them;
    None when there is no word to look for. Every term is a double-quoted FTS5 string
    of word characters only, so no input can reach FTS5's own syntax."""
    groups: list[list[str]] = [[]]  # OR of ANDs
    excluded: list[str] = []
    pending_or = False
    for negated, phrase, bare in _QUERY_PART.findall(query):
        if bare and bare.lower() == "or":
            pending_or = bool(groups[-1])
            continue
        if bare == "AND":  # words go together anyway
            continue
        source = bare or phrase
        neg = bool(negated) or (bool(bare) and bare.startswith("-") and len(bare) > 1)
        words = _WORD.findall(source)
        if not words:
            continue
        term = '"' + " ".join(words) + '"'
        if neg:
            excluded.append(term)
            continue
        if pending_or:
            groups.append([])
            pending_or = False
        groups[-1].append(term)
    wanted = [" AND ".join(g) for g in groups if g]
    if not wanted:
        return None
    expr = " OR ".join(f"({w})" for w in wanted) if len(wanted) > 1 else wanted[0]
    if excluded:
        expr = f"({expr}) NOT ({' OR '.join(excluded)})"
    return expr


# ------------------------------------------------------------------ the directory


# Named here: inside the class, `list` is the method.
Rows = list[dict[str, Any]]
Clauses = list[ColumnElement[bool]]


class SessionDirectory:
    """What the session tools read: blocking calls, run with `asyncio.to_thread`."""

    def __init__(self, engine: Engine, *, rank_window: int | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        default = SQLITE_RANK_WINDOW if self.dialect == "sqlite" else POSTGRES_RANK_WINDOW
        self.rank_window = rank_window or default

    # ------------------------------------------------------------------ list

    def list(
        self,
        caller_agent_id: str,
        policy: AccessPolicy | None,
        *,
        filter: str | None = None,
        limit: int = 20,
    ) -> Rows:
        """Visible sessions, newest first; `filter` keeps those whose key, task or agent
        contains it (case-insensitive)."""
        _check_limit("limit", limit, 1)
        query = (
            select(
                SessionRow.id,
                SessionRow.agent_id,
                SessionRow.thread_key,
                SessionRow.state,
                SessionRow.parent_id,
                SessionRow.created_at,
                SessionRow.task,
            )
            .where(visible_clause(policy, caller_agent_id))
            .order_by(SessionRow.created_at.desc(), SessionRow.id.desc())
            .limit(min(limit, MAX_LIST))
        )
        needle = (filter or "").strip().lower()
        if needle:
            key = SessionRow.agent_id + ":" + SessionRow.thread_key
            query = query.where(
                or_(
                    func.lower(key).contains(needle, autoescape=True),
                    func.lower(SessionRow.task).contains(needle, autoescape=True),
                )
            )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "id": r.id,
                "key": session_key(r.agent_id, r.thread_key),
                "agent": r.agent_id,
                "state": r.state,
                "thread": r.thread_key,
                "parent_id": r.parent_id,
                "created_at": _iso(r.created_at),
                "task": _preview(r.task),
            }
            for r in rows
        ]

    # --------------------------------------------------------------- history

    def history(
        self,
        caller_agent_id: str,
        policy: AccessPolicy | None,
        key_or_id: str,
        *,
        limit: int = 20,
        offset: int = 0,
    ) -> Rows:
        """The transcript of one visible session (by key: the newest session with that
        key), oldest first. Pages run back from the end: offset 0 is the newest `limit`
        events, offset 20 the 20 before those, and so on."""
        _check_limit("limit", limit, 1)
        _check_limit("offset", offset, 0)
        with Session(self.engine) as session:
            target = self._find(session, caller_agent_id, policy, key_or_id)
            rows = session.execute(
                select(
                    TranscriptEvent.id,
                    TranscriptEvent.at,
                    TranscriptEvent.kind,
                    TranscriptEvent.data,
                )
                .where(TranscriptEvent.session_id == target)
                .order_by(TranscriptEvent.id.desc())
                .limit(min(limit, MAX_HISTORY))
                .offset(offset)
            ).all()
        return [
            {"id": r.id, "at": _iso(r.at), "kind": r.kind, "data": dict(r.data)}
            for r in reversed(rows)
        ]

    # ------------------------------------------------------------------ send

    def resolve_live(
        self, caller_agent_id: str, policy: AccessPolicy | None, key_or_id: str
    ) -> str | None:
        """The live session that `sessions_send` to `key_or_id` reaches, or None when the
        visible session (or every session with that key) has ended. SendRefused when the
        policy forbids sending; UnknownSession when nothing visible has that key or id."""
        if policy is not None and not policy.can_send:
            raise SendRefused(SEND_REFUSED)
        with Session(self.engine) as session:
            self._find(session, caller_agent_id, policy, key_or_id)
            live = session.execute(
                self._lookup(caller_agent_id, policy, key_or_id).where(
                    SessionRow.state.in_(LIVE_STATES)
                )
            ).scalar()
        return None if live is None else str(live)

    def _lookup(
        self, caller_agent_id: str, policy: AccessPolicy | None, key_or_id: str
    ) -> Select[Any]:
        return (
            select(SessionRow.id)
            .where(_addressed(key_or_id), visible_clause(policy, caller_agent_id))
            .order_by(SessionRow.created_at.desc(), SessionRow.id.desc())
            .limit(1)
        )

    def _find(
        self,
        session: Session,
        caller_agent_id: str,
        policy: AccessPolicy | None,
        key_or_id: str,
    ) -> str:
        found = session.execute(self._lookup(caller_agent_id, policy, key_or_id)).scalar()
        if found is None:
            raise UnknownSession(NOT_VISIBLE.format(target=key_or_id))
        return str(found)

    # ---------------------------------------------------------------- search

    def search(
        self,
        caller_agent_id: str,
        policy: AccessPolicy | None,
        query: str,
        *,
        limit: int = 5,
        exclude_session: str | None = None,
        repos: tuple[str, ...] | None = None,
    ) -> Rows:
        """Transcript events of visible sessions that match `query`, best first: each
        with its session's id and key, the event's id and kind, and a snippet with the
        matched words between ** marks. `repos` (an API token's limit) keeps sessions of
        those repositories only."""
        _check_limit("limit", limit, 1)
        limit = min(limit, MAX_SEARCH)
        query = query.replace("\x00", " ")  # PostgreSQL's text cannot hold NUL
        where = [] if policy is None else [visible_clause(policy, caller_agent_id)]
        if exclude_session is not None:
            where.append(SessionRow.id != exclude_session)
        if repos is not None:
            where.append(SessionRow.repo.in_(repos) if repos else false())
        if self.dialect == "sqlite":
            return self._search_sqlite(query, where, limit)
        if self.dialect == "postgresql":
            return self._search_postgres(query, where, limit)
        raise NotImplementedError(f"no full-text search for {self.dialect}")

    def _search_sqlite(self, query: str, where: Clauses, limit: int) -> Rows:
        match = fts5_query(query)
        if match is None:
            return []
        # FTS5 walks its matches newest first (descending rowid, no sort) and stops after
        # the window of visible ones; bm25 (lower is better) ranks only those. Visibility
        # is a lookup in the visible sessions' event ids, gathered once from the covering
        # index on (session_id, id); the unary + keeps FTS5 from taking that IN as a
        # constraint of its own, which it would answer one rowid at a time (seconds).
        # Events and sessions are read for the winners only, and so are the snippets.
        rowid: ColumnElement[int] = literal_column("transcript_fts.rowid")
        window = (
            select(rowid.label("id"), func.bm25(literal_column("transcript_fts")).label("rank"))
            .select_from(table("transcript_fts"))
            .where(text("transcript_fts MATCH :match"))
            .order_by(rowid.desc())
            .limit(self.rank_window)
        )
        if where:
            visible = select(TranscriptEvent.id).where(
                TranscriptEvent.session_id.in_(select(SessionRow.id).where(*where))
            )
            window = window.where(literal_column("+transcript_fts.rowid").in_(visible))
        ranked = window.subquery("window")
        top = (
            select(
                ranked.c.id,
                ranked.c.rank,
                TranscriptEvent.kind,
                TranscriptEvent.session_id,
                SessionRow.agent_id,
                SessionRow.thread_key,
            )
            .join(TranscriptEvent, TranscriptEvent.id == ranked.c.id)
            .join(SessionRow, SessionRow.id == TranscriptEvent.session_id)
            .order_by(ranked.c.rank, ranked.c.id.desc())
            .limit(limit)
        )
        snippet = text(
            "SELECT rowid, snippet(transcript_fts, 0, :mark, :mark, :ellipsis, :words) "
            "FROM transcript_fts WHERE transcript_fts MATCH :match AND rowid IN :ids"
        ).bindparams(bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            rows = conn.execute(top, {"match": match}).all()
            if not rows:
                return []
            snippets: dict[int, str] = dict(
                conn.execute(
                    snippet,
                    {
                        "match": match,
                        "ids": [r.id for r in rows],
                        "mark": MARK,
                        "ellipsis": ELLIPSIS,
                        "words": SNIPPET_WORDS,
                    },
                ).all()
            )
        return [_hit(r, snippets.get(r.id, ""), -float(r.rank)) for r in rows]

    def _search_postgres(self, query: str, where: Clauses, limit: int) -> Rows:
        if not query.strip():
            return []
        # The stored tsvector of migration 0004 (no model: SQLite has no such type). One
        # pass over the events finds the newest visible matches and ranks them from the
        # stored vector: for a rare word the planner takes the GIN index, for a common one
        # it walks the newest events backwards and stops once the window is full.
        vector: ColumnElement[Any] = literal_column("transcript_events.search_vector")
        tsquery = func.websearch_to_tsquery(literal_column("'english'"), bindparam("q"))
        found = select(
            TranscriptEvent.id,
            TranscriptEvent.kind,
            TranscriptEvent.session_id,
            func.ts_rank(vector, tsquery).label("rank"),
        ).where(vector.op("@@")(tsquery))
        if where:
            found = found.where(TranscriptEvent.session_id.in_(select(SessionRow.id).where(*where)))
        window = (
            found.order_by(TranscriptEvent.id.desc()).limit(self.rank_window).subquery("window")
        )
        top = (
            select(window)
            .order_by(window.c.rank.desc(), window.c.id.desc())
            .limit(limit)
            .subquery("top")
        )
        options = (
            f"StartSel={MARK}, StopSel={MARK}, MaxWords={SNIPPET_WORDS}, "
            f'MinWords={SNIPPET_WORDS // 2}, MaxFragments=2, FragmentDelimiter=" {ELLIPSIS} "'
        )
        headline = func.ts_headline(
            literal_column("'english'"),
            TranscriptEvent.search_text,
            tsquery,
            bindparam("options", options),
        )
        final = (
            select(
                top.c.id,
                top.c.kind,
                top.c.session_id,
                SessionRow.agent_id,
                SessionRow.thread_key,
                top.c.rank,
                headline.label("snippet"),
            )
            .join(TranscriptEvent, TranscriptEvent.id == top.c.id)
            .join(SessionRow, SessionRow.id == top.c.session_id)
            .order_by(top.c.rank.desc(), top.c.id.desc())
        )
        with self.engine.connect() as conn:
            rows = conn.execute(final, {"q": query}).all()
        return [_hit(r, r.snippet or "", float(r.rank)) for r in rows]


def _hit(row: Any, snippet: str, score: float) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "key": session_key(row.agent_id, row.thread_key),
        "event_id": row.id,
        "kind": row.kind,
        "snippet": snippet,
        "score": score,
    }
