"""The session service core: launching, feeding, closing, replies and the status comment."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sqlalchemy import Connection

from bot import outbox as ob
from bot.agents.base import (
    AgentSpec,
    Budget,
    BudgetExceeded,
    Engine,
)
from bot.agents.config import DEFAULT_BRANCH_TEMPLATE
from bot.agents.providers.base import ToolChoice
from bot.clock import utcnow
from bot.db.calls import StoreCalls
from bot.events import HEADLESS, ThreadRef
from bot.hosts.base import HostClient, HostError, can_write
from bot.sessions import status
from bot.sessions.agents import run_record, with_run_choice
from bot.sessions.approvals import (
    ApprovalStore,
)
from bot.sessions.context import ContextReader
from bot.sessions.limits import Hold, Holds
from bot.sessions.memory import MemoryStore
from bot.sessions.search import SessionDirectory
from bot.sessions.store import (
    AGENT_REMOVED,
    BUDGET,
    CLOSED,
    PARENT_CLOSED,
    CancelAnswer,
    InputInfo,
    Launch,
    LaunchResult,
    SessionInfo,
    SessionOptions,
    SessionStore,
    has_status,
)
from bot.sessions.tools import HostFor, reply_write

if TYPE_CHECKING:
    from bot.workspaces.runtime import WorkspaceRuntime

log = logging.getLogger(__name__)

SESSION_IN_KEY = re.compile(r"\bs-[0-9a-f]{8}\b")
PermissionCheck = Callable[[str, int | None, str, str], Awaitable[str]]
Claimed = tuple[SessionInfo, list[InputInfo]]


class Seat(NamedTuple):
    """A place a turn runner keeps for a launch's first turn: who claims it, for how long."""

    owner: str
    lease_seconds: float


class Enqueue(Protocol):
    """Blocking: store a write in the outbox, its row's id; in `conn`'s transaction (on
    the sessions' database) when given."""

    def __call__(self, write: ob.Write, conn: Connection | None = None) -> int: ...


REFUSED_TRIGGER = (
    "Sorry @{login}, only people with write access to this repository can start or steer "
    "Threadline sessions."
)
REFUSED_COMMAND = (
    "Sorry @{login}, only people with write access to this repository can use `{command}`."
)
EXTEND_REFUSED = "Cannot extend session `{id}` by {minutes} min: at most {most} min in all."
BUDGET_CLOSED = "Session `{id}` stopped: {reason}."
NOTHING_TO_STOP = "Session `{id}` has no turn in flight: nothing to stop."
AGENT_REMOVED_CLOSED = (
    "Session `{id}` stopped: its agent `{agent}` is no longer in Threadline's configuration. "
    "Mention the bot (or use `/agent <id>`) to start a new session with a configured agent."
)


def tighter(one: Budget, other: Budget) -> Budget:
    """Each limit of the two budgets, the lower one where both set it."""

    def low(a: float | None, b: float | None) -> float | None:
        return b if a is None else a if b is None else min(a, b)

    return Budget(
        tokens=low(one.tokens, other.tokens),  # type: ignore[arg-type]
        turns=low(one.turns, other.turns),  # type: ignore[arg-type]
        minutes=low(one.minutes, other.minutes),
        cost_micros=low(one.cost_micros, other.cost_micros),  # type: ignore[arg-type]
    )


def working_minutes(session: SessionInfo, now: datetime) -> float:
    """Minutes the session has worked (turns running), not waited for comments: the
    clock of its time limit, whose deadline moves on by every wait."""
    allowed = session.options.time_limit_minutes + session.extended_minutes
    started = session.time_limit_at - timedelta(minutes=allowed)
    return max((now - started).total_seconds() / 60, 0.0)


class AgentCatalog(Protocol):
    """Where agents come from (the configuration)."""

    def agent(self, agent_id: str | None) -> AgentSpec:
        """The agent `agent_id`, or the default agent for None; KeyError if unknown."""
        ...

    def engine(self, agent: AgentSpec) -> Engine: ...

    def overridden(self, agent: AgentSpec, options: SessionOptions) -> AgentSpec:
        """`agent` with the session's per-session overrides applied."""
        ...

    async def close(self) -> None:
        """Release what the engines hold."""
        ...


@dataclass(frozen=True)
class Trigger:
    """What asks for a session: a comment, a label, an assignment."""

    client_request_id: str
    thread: ThreadRef
    installation_id: int | None
    login: str
    task: str
    agent_id: str | None = None
    comment_id: str | None = None
    url: str | None = None
    # What the repository's configuration narrowed (None: the server's as it is).
    agent: AgentSpec | None = None
    options: SessionOptions | None = None
    resumed_from: str | None = None  # the session (ended by the clock) this one takes up
    tool_choice: ToolChoice | None = None  # for this session's turns (a schedule's)


def _has_status(session: SessionInfo) -> bool:
    return has_status(session.parent_id, session.thread.host)


class ServiceCore:
    """What handlers, turns and tools call: launch, feed, close, write, publish status."""

    def __init__(
        self,
        store: SessionStore,
        *,
        agents: AgentCatalog,
        options: SessionOptions,
        max_live: int,
        enqueue: Enqueue,
        permission: PermissionCheck,
        wake_sender: Callable[[], None] = lambda: None,
        wake_runner: Callable[[], None] = lambda: None,
        deadline_changed: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
        permission_ttl: float = 60.0,
        host_for: HostFor | None = None,
    ) -> None:
        self.store = store
        self.agents = agents
        self.options = options
        self.max_live = max_live
        self._enqueue = enqueue
        self.wake_sender = wake_sender
        self._permission = permission
        self.wake_runner = wake_runner
        # This process's turn runner, for a launch that claims its first turn itself.
        self.seat_turn: Callable[[], Seat | None] = lambda: None
        self.adopt_turn: Callable[[Claimed | None], None] = lambda claimed: None
        self.deadline_changed = deadline_changed
        self.clock = clock
        self._permission_ttl = permission_ttl
        self._permissions: dict[tuple[str, str, str], tuple[float, str]] = {}
        self.host_for = host_for
        # A host's client by host name and installation (the API checks a thread exists).
        self.host_client: Callable[[str, int | None], HostClient] | None = None
        # Its short store calls: inline on SQLite, in a thread on PostgreSQL.
        self.calls = StoreCalls.for_engine(store.engine)
        self.directory = SessionDirectory(store.engine)
        self.memory = MemoryStore(store.engine)
        self.approvals = ApprovalStore(store.engine, clock=clock)
        self.branch_template = DEFAULT_BRANCH_TEMPLATE
        self.exclude_starter = False  # may the person who started a run approve it?
        self.workspaces: WorkspaceRuntime | None = None  # git worktrees for agents with one
        self.public_url: str | None = None  # links in status comments (THREADLINE_PUBLIC_URL)
        self.holds = Holds(store.engine, clock=clock)  # pauses and daily spending limits
        self.show_cost = False  # the session's cost in its status comment (`status.showCost`)
        # What a session is told of its thread when it starts (bot.sessions.context).
        self.context = ContextReader(self.can_write)

    # ------------------------------------------------------------------ asking

    async def live_for(self, thread: ThreadRef) -> SessionInfo | None:
        return await self.calls(self.store.live_for, thread.key)

    async def last_in(self, thread: ThreadRef) -> SessionInfo | None:
        """The thread's most recent session (what a mention may resume)."""
        return await self.calls(self.store.last_in, thread.key)

    async def hold_for(self, host: str, repo: str) -> Hold | None:
        """Why new work in `repo` waits now (paused, a daily limit spent), or None."""
        return await self.calls(self.holds.hold_for, host, repo)

    async def can_write(
        self, host: str, installation_id: int | None, repo: str, login: str
    ) -> bool:
        """Whether `login` has write access; asked of the host, cached for a minute."""
        key = (host, repo, login.lower())
        cached = self._permissions.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._permission_ttl:
            return can_write(cached[1])
        try:
            permission = await self._permission(host, installation_id, repo, login)
        except HostError as exc:
            if exc.status == 404:
                permission = "none"  # not a collaborator at all
            else:
                raise
        self._permissions[key] = (now, permission)
        return can_write(permission)

    # --------------------------------------------------------------- launching

    async def launch(self, trigger: Trigger) -> LaunchResult:
        """Start a session for `trigger` (idempotent by its client request id)."""
        agent = trigger.agent or self.agents.agent(trigger.agent_id)
        request = Launch(
            client_request_id=trigger.client_request_id,
            thread=trigger.thread,
            installation_id=trigger.installation_id,
            agent_id=agent.id,
            task=trigger.task,
            started_by=trigger.login,
            trigger_comment_id=trigger.comment_id,
            trigger_url=trigger.url,
            options=trigger.options or self.options,
            spec=run_record(agent, trigger.tool_choice),
            resumed_from=trigger.resumed_from,
        )

        # A runner of this process with a free place takes the first turn in the launch's
        # own transaction, unless a spending limit holds the repository.
        seat = self.seat_turn()
        claimed: Claimed | None = None

        def first_writes(conn: Connection, session: SessionInfo) -> None:
            """In the launch's transaction: the 👀 on the trigger, the first turn where this
            process takes it, and the status comment."""
            nonlocal claimed
            if trigger.comment_id is not None:
                ack = ob.reaction(
                    f"{session.id}.ack",
                    trigger.thread,
                    trigger.comment_id,
                    "eyes",
                    trigger.installation_id,
                )
                self._write_in(conn, session, ack)
            claimed = None
            if seat is not None and session.state != CLOSED:
                owner, lease = seat
                claimed, _ = self.store.claim_in(
                    conn, owner, lease_seconds=lease, first_of=session.id
                )
            self.status_in(conn, claimed[0] if claimed else session, counted=True)

        result: LaunchResult | None = None
        try:
            if seat is not None and self.holds.limits.any:  # (else nothing to read)
                held = await self.calls(self.holds.held)
                if held.for_repo(trigger.thread.host, trigger.thread.repo) is not None:
                    self.adopt_turn(None)
                    seat = None
            result = await self.calls(
                self.store.launch, request, max_live=self.max_live, after=first_writes
            )
        finally:
            if seat is not None:  # the place is used, or free again, whatever happened
                ours = result is not None and result.created and claimed is not None
                self.adopt_turn(claimed if ours else None)
        if not result.created:
            return result
        session = result.session
        self.wake_sender()
        if not result.refused:
            self.deadline_changed()
            if claimed is None:
                self.wake_runner()
        log.info(
            "session %s launched in %s (agent %s)%s",
            session.id,
            session.thread.key,
            agent.id,
            f", resuming {session.resumed_from}" if session.resumed_from else "",
        )
        return result

    async def plain_reply(self, trigger: Trigger, key: str, text: str) -> None:
        """A reply in the trigger's thread that belongs to no session (help, errors)."""
        await self._write(ob.comment(key, trigger.thread, text, trigger.installation_id))

    async def refuse(self, trigger: Trigger, command: str | None = None) -> None:
        """One short, polite reply to someone who may not do what they asked."""
        text = (
            REFUSED_COMMAND.format(login=trigger.login, command=command)
            if command
            else REFUSED_TRIGGER.format(login=trigger.login)
        )
        key = f"refused.{trigger.client_request_id}"
        await self._write(ob.comment(key, trigger.thread, text, trigger.installation_id))

    # ----------------------------------------------------------------- feeding

    async def feed(
        self,
        session: SessionInfo,
        *,
        kind: str,
        author: str,
        body: str,
        comment_id: str | None = None,
        url: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> bool:
        """Queue input for the session's next turn (`params`: runtimeParams for that turn
        only); False if it is not live or the comment is queued already."""
        queued = await self.calls(
            self.store.add_input,
            session.id,
            kind=kind,
            author=author,
            body=body,
            comment_id=comment_id,
            url=url,
            params=params,
        )
        if queued is not None:
            self.wake_runner()
        return queued is not None

    async def note(self, session: SessionInfo, kind: str, data: dict[str, Any]) -> None:
        """Record an event; one about a comment (`data["comment"]`) only once."""
        comment_id = data.get("comment")
        if comment_id is None:
            await self.calls(self.store.record, session.id, kind, data)
            return
        await self.calls(self.store.record_for_comment, session.id, kind, str(comment_id), data)

    async def amend(self, comment_id: str, body: str, by: str) -> bool:
        return await self.calls(self.store.amend_input, comment_id, body, by) is not None

    async def withdraw(self, comment_id: str, by: str) -> bool:
        return await self.calls(self.store.withdraw_input, comment_id, by) is not None

    # ----------------------------------------------------------------- closing

    async def close(
        self, session: SessionInfo, reason: str, *, by: str | None
    ) -> SessionInfo | None:
        closed = await self.calls(self.store.close, session.id, reason, by=by)
        if closed is not None:
            await self.publish_status(closed)
            self.deadline_changed()
            log.info("session %s closed: %s", closed.id, reason)
            for child in await self.calls(self.store.children, session.id):
                if child.live:
                    await self.close(child, PARENT_CLOSED, by=by)
            if self.workspaces is not None:
                await self.workspaces.close(closed.id)
        return closed

    def agent_for(self, session: SessionInfo) -> AgentSpec:
        """The session's agent as configured now, never wider than as launched: a tool or
        budget a repository's file took away at launch stays away."""
        agent = self.agents.overridden(self.agents.agent(session.agent_id), session.options)
        spec = session.spec or {}
        if "tools" in spec:
            agent = replace(agent, tools=tuple(t for t in agent.tools if t in spec["tools"]))
        launched = spec.get("budget")
        if isinstance(launched, dict):
            agent = replace(agent, budget=tighter(agent.budget, Budget(**launched)))
        return with_run_choice(agent, spec)  # a spawn's or a schedule's tool_choice

    def check_budget(self, session: SessionInfo, agent: AgentSpec) -> None:
        """Raise BudgetExceeded when the session is past its agent's turns or minutes."""
        budget = agent.budget
        if budget.turns is not None and session.turns > budget.turns:
            raise BudgetExceeded(f"turn budget of {budget.turns} spent")
        if budget.minutes is not None:
            minutes = working_minutes(session, self.clock())
            if minutes > budget.minutes:
                raise BudgetExceeded(f"time budget of {budget.minutes:g} min spent")

    async def close_for_budget(self, session: SessionInfo, reason: str) -> None:
        closed = await self.close(session, BUDGET, by=None)
        if closed is not None:
            await self.note(closed, "budget", {"reason": reason})
            await self.reply(closed, "budget", BUDGET_CLOSED.format(id=session.id, reason=reason))

    async def close_for_removed_agent(self, session: SessionInfo) -> None:
        """The session's agent left the configuration: close it and say so in the thread."""
        closed = await self.close(session, AGENT_REMOVED, by=None)
        if closed is not None:
            log.warning("session %s closed: agent %r is not configured", closed.id, closed.agent_id)
            text = AGENT_REMOVED_CLOSED.format(id=session.id, agent=session.agent_id)
            await self.reply(closed, "agent-removed", text)

    async def stop(
        self, session: SessionInfo, *, by: str, key: str, how: str = "comment"
    ) -> CancelAnswer:
        """Ask whichever process runs the session's turn to stop it (bot/sessions/
        store_cancel.py); the session stays and goes idle. A comment with nothing to stop
        gets a short answer."""
        answer = await self.calls(self.store.request_cancel, session.id, by=by, how=how)
        if answer == "no_turn" and how == "comment":
            await self.reply(session, key, NOTHING_TO_STOP.format(id=session.id))
        return answer

    async def extend(self, session: SessionInfo, minutes: float, *, by: str) -> SessionInfo | None:
        extended = await self.calls(self.store.extend, session.id, minutes, by=by)
        if extended is None:
            text = EXTEND_REFUSED.format(
                id=session.id, minutes=minutes, most=session.options.max_extend_minutes
            )
            await self.reply(session, f"extend-refused.{int(time.time() * 1000)}", text)
        else:
            await self.publish_status(extended)
            self.deadline_changed()
        return extended

    async def close_installation(self, host: str, installation_id: int) -> None:
        for closed in await asyncio.to_thread(self.store.close_installation, host, installation_id):
            await self.publish_status(closed)

    # ----------------------------------------------------------------- writing

    async def write(self, session: SessionInfo, write: ob.Write) -> int:
        """Queue `write` and record it in the session's transcript (one transaction)."""

        def queue_and_record() -> int:  # one transaction
            with self.store.engine.begin() as conn:
                return self._write_in(conn, session, write)

        pk = await self.calls(queue_and_record)
        self.wake_sender()
        return pk

    async def _write(self, write: ob.Write) -> int:
        """Queue `write` (no transcript line)."""
        pk = await self.calls(self._store_write, write)
        self.wake_sender()
        return pk

    def _store_write(self, write: ob.Write, conn: Connection | None = None) -> int:
        """Blocking: a headless session has no host to write to (its transcript's "write"
        event is all there is)."""
        return 0 if write.thread.host == HEADLESS else self._enqueue(write, conn)

    def _write_in(self, conn: Connection, session: SessionInfo, write: ob.Write) -> int:
        """Blocking, in the caller's transaction: queue `write` and its transcript line."""
        pk = self._store_write(write, conn)
        data = {"key": write.key, "kind": write.kind, "thread": write.thread.key, "outbox": pk}
        self.store.record(session.id, "write", data, conn)
        return pk

    async def reply(self, session: SessionInfo, key: str, body: str) -> None:
        await self.write(session, reply_write(session, key, body))

    async def write_in_turn(
        self,
        session: SessionInfo,
        owner: str,
        call: dict[str, Any],
        write: ob.Write | None,
        result: dict[str, Any],
    ) -> bool:
        """A tool call whose whole work is queueing `write` (None: it queues nothing), in
        one transaction with its `tool_call` and `tool_result` events, if `owner` still
        runs the session's turn (False: it does not, and nothing was written). The call,
        its write and its result commit together or not at all."""

        def in_one() -> bool:
            with self.store.engine.begin() as conn:
                if not self.store.turn_owned_in(conn, session.id, owner):
                    return False
                self.store.record(session.id, "tool_call", call, conn)
                if write is not None:
                    self._write_in(conn, session, write)
                self.store.record(session.id, "tool_result", result, conn)
                return True

        if not await self.calls(in_one):
            return False
        if write is not None:
            self.wake_sender()
        return True

    async def write_failed(self, key: str, kind: str, error: str) -> None:
        """The outbox gave up on one of a session's writes: say so in its transcript and,
        unless the status comment itself is what failed, in its status comment."""
        found = SESSION_IN_KEY.search(key)
        if found is None:
            return
        session = await self.calls(self.store.get, found.group(0))
        if session is None:
            return
        await self.note(session, "write_failed", {"key": key, "kind": kind, "error": error})
        if not key.startswith("status."):
            text = f"a {kind} could not be written: {error}"
            await self.calls(self.store.note_problem, session.id, text)
            await self.publish_status(session)

    # ------------------------------------------------------------------ status

    async def publish_status(self, session: SessionInfo) -> None:
        """Queue the newest state of the session's status comment (older unsent ones drop).
        A delegation has none: its coordinator's session speaks for it; nor has a headless
        session (no host thread to hold one)."""
        if not _has_status(session):
            return  # (no transaction opened for nothing)

        def snapshot_and_queue() -> None:  # one transaction for the reads and the write
            with self.store.engine.begin() as conn:
                self.status_in(conn, session)

        await self.calls(snapshot_and_queue)
        self.wake_sender()

    def status_in(self, conn: Connection, session: SessionInfo, *, counted: bool = False) -> None:
        """Blocking, in the caller's transaction: queue the session's status comment as
        it is now (see `publish_status`); the caller wakes the sender after its commit.
        `counted`: `session` is the row as this transaction just wrote it, its status_seq
        already counted for this version (a launch, a turn's claim and its finish), so
        it is the snapshot; else the version is counted and the row read here."""
        if not _has_status(session):
            return
        if counted:
            seq, fresh = session.status_seq, session
        else:
            seq, fresh = self.store.status_snapshot_in(conn, session.id)
        gates = self.approvals.gates(session.id, conn)
        changes = self.approvals.change_sets(session.id, conn) if gates else []
        body = status.render(
            fresh, self.clock(), gates, changes, public_url=self.public_url, cost=self.show_cost
        )
        key = status.status_key(session.id)
        self._store_write(ob.upsert(key, seq, session.thread, body, session.installation_id), conn)
