"""The session runtime: launching, feeding, closing, running turns, and the timers.

Handlers call `SessionService`; a `TurnRunner` per process runs turns (one at a time per
session, across every process, through `SessionStore.claim_turn`); a `Timekeeper` per
process wakes at the next deadline and closes what is overdue. Everything written to a
host goes through the outbox; everything that happens goes into the transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import outbox as ob
from bot.agents.base import (
    AgentSpec,
    Budget,
    BudgetExceeded,
    Engine,
    EngineError,
    ToolResult,
    Turn,
    TurnInput,
)
from bot.agents.config import DEFAULT_BRANCH_TEMPLATE
from bot.clock import utcnow, worker_name
from bot.db.outage import Outage
from bot.events import ThreadRef
from bot.hosts.base import HostError, can_write
from bot.log import session_var
from bot.loops import nap
from bot.sessions import status
from bot.sessions.agents import spec_record
from bot.sessions.approvals import (
    APPLIED,
    APPROVED,
    AWAITING,
    CHANGES_REQUESTED,
    IDLE,
    REJECTED,
    STALE,
    ApprovalStore,
    GateInfo,
)
from bot.sessions.changes import apply_change_set
from bot.sessions.memory import MemoryStore
from bot.sessions.search import SessionDirectory
from bot.sessions.store import (
    BUDGET,
    DONE,
    FAILURE,
    PARENT_CLOSED,
    InputInfo,
    Launch,
    LaunchResult,
    SessionInfo,
    SessionOptions,
    SessionStore,
)
from bot.sessions.tools import HostFor, SessionTools, TurnAbandoned

log = logging.getLogger(__name__)

SESSION_IN_KEY = re.compile(r"\bs-[0-9a-f]{8}\b")
PermissionCheck = Callable[[str, int | None, str, str], Awaitable[str]]
Write = Callable[[ob.Write], Awaitable[int]]

REFUSED_TRIGGER = (
    "Sorry @{login}, only people with write access to this repository can start or steer "
    "Threadline sessions."
)
REFUSED_COMMAND = (
    "Sorry @{login}, only people with write access to this repository can use `{command}`."
)
EXTEND_REFUSED = "Cannot extend session `{id}` by {minutes} min: at most {most} min in all."
BUDGET_CLOSED = "Session `{id}` stopped: {reason}."
NO_GATE = "Nothing in session `{id}` is waiting for an approval."
STARTER_REFUSED = "Sorry @{login}, the person who started this run cannot approve it."
OLD_COMMIT = (
    "That approval was given on `{sha}`, but the pull request's head is now `{head}`: "
    "it does not count. Review the current head and approve again."
)
STALE_GATE = (
    "The pull request moved from `{pinned}` to `{head}` after the change was proposed: "
    "the proposal is stale and was not applied. The agent is asked to propose it again."
)
CHANGES_ASKED = "@{login} requested changes: {text}"
APPROVED_PLAIN = "Approved by @{login}."
OPENED = "Approved by @{login}: opened #{number} ({url})."
NOT_APPLIED = "Approved by @{login}, but the change was not applied: {error}"
DELEGATION_LIMIT = "delegation limit reached: at most {most} per session; nothing was started"
UNKNOWN_SUB_AGENT = "no agent {agent!r} is configured"
DELEGATION_FAILED = "the delegation to {agent} (session {id}) failed: {error}"
DELEGATION_UNFINISHED = "the delegation to {agent} (session {id}) ended ({state}) without output"


def tighter(one: Budget, other: Budget) -> Budget:
    """Each limit of the two budgets, the lower one where both set it."""

    def low(a: float | None, b: float | None) -> float | None:
        return b if a is None else a if b is None else min(a, b)

    return Budget(
        tokens=low(one.tokens, other.tokens),  # type: ignore[arg-type]
        turns=low(one.turns, other.turns),  # type: ignore[arg-type]
        minutes=low(one.minutes, other.minutes),
    )


class AgentCatalog(Protocol):
    """Where agents come from (the configuration)."""

    def agent(self, agent_id: str | None) -> AgentSpec:
        """The agent `agent_id`, or the default agent for None; KeyError if unknown."""
        ...

    def engine(self, agent: AgentSpec) -> Engine: ...

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


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        *,
        agents: AgentCatalog,
        options: SessionOptions,
        max_live: int,
        write: Write,
        permission: PermissionCheck,
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
        self._write = write
        self._permission = permission
        self.wake_runner = wake_runner
        self.deadline_changed = deadline_changed
        self.clock = clock
        self._permission_ttl = permission_ttl
        self._permissions: dict[tuple[str, str, str], tuple[float, str]] = {}
        self.host_for = host_for
        self.directory = SessionDirectory(store.engine)
        self.memory = MemoryStore(store.engine)
        self.approvals = ApprovalStore(store.engine, clock=clock)
        self.branch_template = DEFAULT_BRANCH_TEMPLATE
        self.exclude_starter = False  # may the person who started a run approve it?

    # ------------------------------------------------------------------ asking

    async def live_for(self, thread: ThreadRef) -> SessionInfo | None:
        return await asyncio.to_thread(self.store.live_for, thread.key)

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
            spec=spec_record(agent),
        )
        result = await asyncio.to_thread(self.store.launch, request, max_live=self.max_live)
        if not result.created:
            return result
        session = result.session
        if trigger.comment_id is not None:
            await self.write(
                session,
                ob.reaction(
                    f"{session.id}.ack",
                    trigger.thread,
                    trigger.comment_id,
                    "eyes",
                    trigger.installation_id,
                ),
            )
        await self.publish_status(session)
        if not result.refused:
            self.deadline_changed()
            self.wake_runner()
        log.info("session %s launched in %s (agent %s)", session.id, session.thread.key, agent.id)
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
    ) -> bool:
        queued = await asyncio.to_thread(
            self.store.add_input,
            session.id,
            kind=kind,
            author=author,
            body=body,
            comment_id=comment_id,
            url=url,
        )
        if queued is not None:
            self.wake_runner()
        return queued is not None

    async def note(self, session: SessionInfo, kind: str, data: dict[str, Any]) -> None:
        """Record an event; one about a comment (`data["comment"]`) only once."""
        comment_id = data.get("comment")
        if comment_id is None:
            await asyncio.to_thread(self.store.record, session.id, kind, data)
            return
        await asyncio.to_thread(
            self.store.record_for_comment, session.id, kind, str(comment_id), data
        )

    async def amend(self, comment_id: str, body: str, by: str) -> bool:
        return await asyncio.to_thread(self.store.amend_input, comment_id, body, by) is not None

    async def withdraw(self, comment_id: str, by: str) -> bool:
        return await asyncio.to_thread(self.store.withdraw_input, comment_id, by) is not None

    # ----------------------------------------------------------------- closing

    async def close(
        self, session: SessionInfo, reason: str, *, by: str | None
    ) -> SessionInfo | None:
        closed = await asyncio.to_thread(self.store.close, session.id, reason, by=by)
        if closed is not None:
            await self.publish_status(closed)
            self.deadline_changed()
            log.info("session %s closed: %s", closed.id, reason)
            for child in await asyncio.to_thread(self.store.children, session.id):
                if child.live:
                    await self.close(child, PARENT_CLOSED, by=by)
        return closed

    def agent_for(self, session: SessionInfo) -> AgentSpec:
        """The session's agent as configured now, never wider than as launched: a tool or
        budget a repository's file took away at launch stays away."""
        agent = self.agents.agent(session.agent_id)
        spec = session.spec or {}
        if "tools" in spec:
            agent = replace(agent, tools=tuple(t for t in agent.tools if t in spec["tools"]))
        launched = spec.get("budget")
        if isinstance(launched, dict):
            agent = replace(agent, budget=tighter(agent.budget, Budget(**launched)))
        return agent

    def check_budget(self, session: SessionInfo, agent: AgentSpec) -> None:
        """Raise BudgetExceeded when the session is past its agent's turns or minutes."""
        budget = agent.budget
        if budget.turns is not None and session.turns > budget.turns:
            raise BudgetExceeded(f"turn budget of {budget.turns} spent")
        if budget.minutes is not None:
            minutes = (self.clock() - session.created_at).total_seconds() / 60
            if minutes > budget.minutes:
                raise BudgetExceeded(f"time budget of {budget.minutes:g} min spent")

    async def close_for_budget(self, session: SessionInfo, reason: str) -> None:
        closed = await self.close(session, BUDGET, by=None)
        if closed is not None:
            await self.note(closed, "budget", {"reason": reason})
            await self.reply(closed, "budget", BUDGET_CLOSED.format(id=session.id, reason=reason))

    async def extend(self, session: SessionInfo, minutes: float, *, by: str) -> SessionInfo | None:
        extended = await asyncio.to_thread(self.store.extend, session.id, minutes, by=by)
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
        pk = await self._write(write)
        await asyncio.to_thread(
            self.store.record,
            session.id,
            "write",
            {"key": write.key, "kind": write.kind, "thread": write.thread.key, "outbox": pk},
        )
        return pk

    async def reply(self, session: SessionInfo, key: str, body: str) -> None:
        await self.write(
            session,
            ob.comment(f"{session.id}.{key}", session.thread, body, session.installation_id),
        )

    async def write_failed(self, key: str, kind: str, error: str) -> None:
        """The outbox gave up on one of a session's writes: say so in its transcript and,
        unless the status comment itself is what failed, in its status comment."""
        found = SESSION_IN_KEY.search(key)
        if found is None:
            return
        session = await asyncio.to_thread(self.store.get, found.group(0))
        if session is None:
            return
        await self.note(session, "write_failed", {"key": key, "kind": kind, "error": error})
        if not key.startswith("status."):
            text = f"a {kind} could not be written: {error}"
            await asyncio.to_thread(self.store.note_problem, session.id, text)
            await self.publish_status(session)

    # -------------------------------------------------------------- approvals

    async def awaiting_in(self, thread: ThreadRef) -> SessionInfo | None:
        """The session waiting on an approval for `thread`: its own, or (for a pull
        request's conversation) the one of a review thread of that pull request."""
        own = await self.live_for(thread)
        if own is not None and own.state == AWAITING:
            return own
        if thread.thread_id is None and thread.target == "pull":
            found = await asyncio.to_thread(self.store.awaiting_under, thread.key)
            if len(found) == 1:
                return found[0]
        return None

    async def decide(
        self,
        session: SessionInfo,
        *,
        approve: bool,
        by: str,
        text: str = "",
        sha: str | None = None,
        how: str,
        key: str,
    ) -> GateInfo | None:
        """A maintainer's answer to the session's open gate (the caller checked their
        write access). An approval is pinned to the pull request's head: one given on an
        older commit does not count, and a gate asked on a head that has since moved is
        stale. Approving applies the change set; asking for changes hands the text back
        to the agent. Either way the session resumes with the outcome as its input."""
        gate = await asyncio.to_thread(self.approvals.waiting_gate, session.id)
        if gate is None:
            await self.reply(session, key, NO_GATE.format(id=session.id))
            return None
        if self.exclude_starter and by.lower() == session.started_by.lower():
            await self.note(session, "approval_refused", {"by": by, "why": "started the run"})
            await self.reply(session, key, STARTER_REFUSED.format(login=by))
            return None
        head = None
        if session.thread.target == "pull" and self.host_for is not None:
            head = (await self.host_for(session).pull_info(session.thread.conversation)).head_sha
            if sha is not None and sha != head:
                await self.note(
                    session, "approval_stale", {"by": by, "sha": sha, "head": head, "how": how}
                )
                await self.reply(session, key, OLD_COMMIT.format(sha=sha[:12], head=head[:12]))
                return None
            if gate.pinned_sha is not None and gate.pinned_sha != head:
                return await self._stale(session, gate, head, by=by, how=how, key=key)
        status_ = APPROVED if approve else CHANGES_REQUESTED
        pinned = head or sha or gate.pinned_sha
        decided = await asyncio.to_thread(
            self.approvals.decide, gate.id, status_, by=by, sha=pinned, text=text or None, how=how
        )
        if decided is None:  # another answer won the race
            return None
        if approve:
            outcome = await self._apply(session, decided, by)
        else:
            if decided.change_set_id is not None:
                await asyncio.to_thread(
                    self.approvals.settle_change_set, decided.change_set_id, status=REJECTED
                )
            outcome = CHANGES_ASKED.format(login=by, text=text or "(no details given)")
        await self._resume(session, kind="approval" if approve else "review", by=by, body=outcome)
        return decided

    async def _apply(self, session: SessionInfo, gate: GateInfo, by: str) -> str:
        change = (
            None
            if gate.change_set_id is None
            else await asyncio.to_thread(self.approvals.change_set, gate.change_set_id)
        )
        if change is None:
            return APPROVED_PLAIN.format(login=by)
        if self.host_for is None:
            return NOT_APPLIED.format(login=by, error="no host connection in this process")
        proposer = session
        if change.session_id != session.id:  # a delegation's change, taken over by the gate
            found = await asyncio.to_thread(self.store.get, change.session_id)
            proposer = found or session
        applied = await apply_change_set(
            self.host_for(session),
            change,
            session.thread,
            agent=proposer.agent_id,
            approver=by,
            template=self.branch_template,
            allow_protected=self._allowed_protected(proposer.agent_id),
        )
        await asyncio.to_thread(
            self.approvals.settle_change_set,
            change.id,
            status=applied.status,
            branch=applied.branch,
            commit_sha=applied.commit_sha,
            pull_number=applied.pull_number,
            pull_url=applied.pull_url,
            error=applied.error,
        )
        if applied.status == APPLIED:
            text = OPENED.format(login=by, number=applied.pull_number, url=applied.pull_url)
        else:
            text = NOT_APPLIED.format(login=by, error=applied.error)
        await self.reply(session, f"applied.{change.id}", text)
        return text

    def _allowed_protected(self, agent_id: str) -> frozenset[str]:
        """The protected kinds of path the server's configuration lets the agent change."""
        try:
            return self.agents.agent(agent_id).allow_protected
        except KeyError:  # no longer configured: it may change none
            return frozenset()

    async def _stale(
        self, session: SessionInfo, gate: GateInfo, head: str, *, by: str, how: str, key: str
    ) -> GateInfo | None:
        decided = await asyncio.to_thread(
            self.approvals.decide, gate.id, STALE, by=by, sha=head, text=None, how=how
        )
        if decided is None:
            return None
        if decided.change_set_id is not None:
            await asyncio.to_thread(
                self.approvals.settle_change_set, decided.change_set_id, status=STALE
            )
        text = STALE_GATE.format(pinned=(gate.pinned_sha or "")[:12], head=head[:12])
        await self.reply(session, key, text)
        await self._resume(session, kind="review", by=by, body=text)
        return decided

    async def head_moved(self, pull: ThreadRef, head: str) -> None:
        """A pull request got a new head: gates asked on an older one go stale."""
        sessions = await asyncio.to_thread(self.store.awaiting_under, pull.key, include_self=True)
        for session in sessions:
            gate = await asyncio.to_thread(self.approvals.waiting_gate, session.id)
            if gate is not None and gate.pinned_sha not in (None, head):
                await self._stale(
                    session, gate, head, by="(push)", how="push", key=f"stale.{gate.id}"
                )

    async def _resume(self, session: SessionInfo, *, kind: str, by: str, body: str) -> None:
        await self.feed(session, kind=kind, author=by, body=body)
        await asyncio.to_thread(self.approvals.set_state, session.id, IDLE, only_from=AWAITING)
        fresh = await asyncio.to_thread(self.store.get, session.id)
        if fresh is not None:
            await self.publish_status(fresh)
        self.wake_runner()

    async def publish_status(self, session: SessionInfo) -> None:
        """Queue the newest state of the session's status comment (older unsent ones drop).
        A delegation has none: its coordinator's session speaks for it."""
        if session.parent_id is not None:
            return
        seq, fresh = await asyncio.to_thread(self.store.status_snapshot, session.id)
        gates = await asyncio.to_thread(self.approvals.gates, session.id)
        changes = await asyncio.to_thread(self.approvals.change_sets, session.id) if gates else []
        body = status.render(fresh, self.clock(), gates, changes)
        await self._write(
            ob.upsert(
                status.status_key(session.id),
                seq,
                session.thread,
                body,
                session.installation_id,
            )
        )


class TurnRunner:
    """Runs sessions' turns: claims one, runs its engine, settles it; repeats."""

    def __init__(
        self,
        service: SessionService,
        *,
        lease_seconds: float = 120.0,
        poll_seconds: float = 1.0,
        name: str | None = None,
        concurrency: int = 8,
    ) -> None:
        self.service = service
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self.name = name or "turns-" + worker_name()
        self.wakeup = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run turns, up to `concurrency` at once (each of another session),
        until `stop`; turns in hand finish first."""
        running: set[asyncio.Task[None]] = set()
        outage = Outage(log, f"turn runner {self.name}")

        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            self.wakeup.set()  # a place is free: look for more

        while not stop.is_set():
            self.wakeup.clear()  # before looking: a wake during the look is kept
            claimed = None
            if len(running) < self.concurrency:
                try:
                    claimed = await asyncio.to_thread(
                        self.service.store.claim_turn, self.name, lease_seconds=self.lease_seconds
                    )
                    outage.ok()
                except Exception as exc:
                    outage.failed(exc, "claim a turn")
            if claimed is not None:
                task = asyncio.create_task(self._run_logged(*claimed))
                running.add(task)
                task.add_done_callback(done)
                continue
            await nap(self.wakeup, stop, self.poll_seconds)
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def run_once(self) -> bool:
        claimed = await asyncio.to_thread(
            self.service.store.claim_turn, self.name, lease_seconds=self.lease_seconds
        )
        if claimed is None:
            return False
        session, inputs = claimed
        await self._run_claimed(session, inputs)
        return True

    async def _run_logged(self, session: SessionInfo, inputs: list[InputInfo]) -> None:
        try:
            await self._run_claimed(session, inputs)
        except Exception:  # the lease runs out and the turn is taken over
            log.exception("turn %d of session %s could not be settled", session.turns, session.id)

    async def _run_claimed(
        self, session: SessionInfo, inputs: list[InputInfo], params: Mapping[str, Any] | None = None
    ) -> None:
        token = session_var.set(session.id)
        heartbeat = asyncio.create_task(self._heartbeat(session.id))
        try:
            await self._turn(session, inputs, params or {})
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            session_var.reset(token)

    async def _turn(
        self, session: SessionInfo, inputs: list[InputInfo], params: Mapping[str, Any]
    ) -> None:
        service = self.service
        await service.publish_status(session)
        agent = service.agent_for(session)
        tools = SessionTools(
            service,
            session,
            session.turns,
            agent,
            self.name,
            host_for=service.host_for,
            directory=service.directory,
            memory=service.memory,
            delegate=self.delegate,
        )
        history = await asyncio.to_thread(service.store.conversation, session.id)
        turn = Turn(
            session_id=session.id,
            number=session.turns,
            agent=agent,
            task=session.task,
            inputs=tuple(TurnInput(i.kind, i.author, i.body) for i in inputs),
            thread_key=session.thread_key or session.thread.key,
            history=tuple(history),
            params=params,
            context={
                "repository": f"{session.thread.host}:{session.thread.repo}",
                "thread": session.thread.key,
                "session": session.id,
                "parent": session.parent_id,
            },
        )
        error: str | None = None
        try:
            service.check_budget(session, agent)
            await service.agents.engine(agent).run_turn(turn, tools)
            await tools.flush()
        except TurnAbandoned:
            log.info("session %s closed during turn %d: the turn stops", session.id, session.turns)
            return
        except BudgetExceeded as exc:
            await tools.flush()
            await service.close_for_budget(session, str(exc))
            return
        except EngineError as exc:
            error = str(exc) or type(exc).__name__
        except Exception as exc:
            log.exception("session %s turn %d crashed", session.id, session.turns)
            error = f"{type(exc).__name__}: {exc}"
        close_reason = None
        keep_open = session.options.keep_open_for_comments and session.parent_id is None
        gate = await asyncio.to_thread(service.approvals.waiting_gate, session.id)
        if error is None and tools.completed and not keep_open and gate is None:
            close_reason = DONE
        finished = await asyncio.to_thread(
            service.store.finish_turn,
            session.id,
            self.name,
            consumed=[i.id for i in inputs],
            turn=session.turns,
            completed=tools.completed,
            close_reason=close_reason,
            failed=error is not None,
            error=error,
            awaiting=gate is not None and error is None,
        )
        if finished is None:
            log.info(
                "session %s: turn %d ended after the session was closed", session.id, session.turns
            )
            return
        if error:
            await asyncio.to_thread(service.store.note_problem, session.id, f"{FAILURE}: {error}")
        await service.publish_status(finished)
        service.deadline_changed()

    async def delegate(
        self,
        parent: SessionInfo,
        tools: SessionTools,
        agent_id: str,
        task: str,
        params: Mapping[str, Any],
        call_id: str,
        ticket: int,
    ) -> ToolResult:
        """Run `task` as a child session of `parent` with agent `agent_id`, in this turn;
        its output is the result. The child remembers nothing of earlier delegations.

        `ticket` is the delegation's place among those asked for in this turn: past the
        limit, the later ones in the model's order are refused, whichever starts first."""
        service = self.service
        store = service.store
        coordinator = tools.agent
        try:
            agent = service.agents.agent(agent_id)
        except KeyError:
            return ToolResult(False, UNKNOWN_SUB_AGENT.format(agent=agent_id))
        most = coordinator.max_delegations
        number = None
        if parent.delegations + ticket <= most:
            number = await asyncio.to_thread(store.take_delegation, parent.id, most)
        if number is None:
            await service.note(parent, "delegation_refused", {"agent": agent_id, "call": call_id})
            return ToolResult(False, DELEGATION_LIMIT.format(most=coordinator.max_delegations))
        options = replace(parent.options, keep_open_for_comments=False, listen_to_comments=False)
        launched = await asyncio.to_thread(
            store.launch,
            Launch(
                client_request_id=f"{parent.id}.d{number}",
                thread=parent.thread,
                installation_id=parent.installation_id,
                agent_id=agent.id,
                task=task,
                started_by=f"session:{parent.id}",
                trigger_comment_id=None,
                trigger_url=None,
                options=options,
                parent_id=parent.id,
                thread_key=f"{parent.thread_key or parent.thread.key}/delegations/{number}",
                spec=spec_record(agent),
            ),
            max_live=2**31,
        )
        child = launched.session
        await service.note(
            parent,
            "delegation_started",
            {
                "turn": tools.turn,
                "call": call_id,
                "child": child.id,
                "agent": agent.id,
                "number": number,
                "task": task,
                "runtimeParams": dict(params),
            },
        )
        claimed = await asyncio.to_thread(
            store.claim_turn, self.name, lease_seconds=self.lease_seconds, session_id=child.id
        )
        if claimed is not None:
            await self._run_claimed(claimed[0], claimed[1], params)
        done = await asyncio.to_thread(store.get, child.id)
        assert done is not None
        if done.state == "failed":
            problem = str(done.progress.get("problem") or "failed")
            result = ToolResult(
                False, DELEGATION_FAILED.format(agent=agent.id, id=child.id, error=problem)
            )
        elif done.completed:
            result = ToolResult(True, done.output or "")
        else:
            text = DELEGATION_UNFINISHED.format(agent=agent.id, id=child.id, state=done.state)
            result = ToolResult(False, text)
        if done.live:  # it ended its turn without task_completed: it is done all the same
            await service.close(done, DONE, by=f"session:{parent.id}")
        await service.note(
            parent,
            "delegation_finished",
            {
                "turn": tools.turn,
                "call": call_id,
                "child": child.id,
                "agent": agent.id,
                "ok": result.ok,
                "output": result.content,
                "tokens": {"input": done.tokens_in, "output": done.tokens_out},
            },
        )
        return result

    async def _heartbeat(self, session_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await asyncio.to_thread(
                self.service.store.renew_turn, session_id, self.name, self.lease_seconds
            )


class Timekeeper:
    """Closes overdue sessions. The deadlines live in the database; APScheduler holds one
    job, set for the next deadline, and a sweep every `sweep_seconds`. A job only wakes
    this timekeeper's loop, which runs the check (a conditional UPDATE per session, so
    when several processes check at once each session closes exactly once); pokes that
    come in a burst are served by one check."""

    JOB = "session-deadlines"

    def __init__(self, service: SessionService, *, sweep_seconds: float = 30.0) -> None:
        self.service = service
        self.sweep_seconds = sweep_seconds
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.wakeup = asyncio.Event()

    async def start(self) -> None:
        """Rebuild the timer from the database: overdue sessions (say, after a restart)
        close right away, and the job is set for the next deadline."""
        began = time.perf_counter()
        self.scheduler.start()
        self.scheduler.add_job(self._wake, "interval", seconds=self.sweep_seconds, id="sweep")
        closed = await self.check()
        live = await asyncio.to_thread(self.service.store.count_live)
        log.info(
            "session timers rebuilt in %.1f ms: %d live sessions, %d overdue closed",
            (time.perf_counter() - began) * 1000,
            live,
            len(closed),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Check whenever woken, until `stop`; a check in progress finishes first."""
        while not stop.is_set():
            await nap(self.wakeup, stop, self.sweep_seconds)
            if stop.is_set():
                break
            self.wakeup.clear()  # before the check: a poke during it brings another
            try:
                await self.check()
            except Exception:
                log.exception("session deadline check failed")

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def poke(self) -> None:
        """A deadline may have moved earlier: check again soon."""
        self.wakeup.set()

    async def _wake(self) -> None:
        self.wakeup.set()

    async def check(self) -> list[SessionInfo]:
        closed = await asyncio.to_thread(self.service.store.expire_due)
        for session in closed:
            await self.service.publish_status(session)
        self._schedule_next(await asyncio.to_thread(self.service.store.next_deadline))
        return closed

    def _schedule_next(self, deadline: datetime | None) -> None:
        if deadline is None or not self.scheduler.running:
            return
        when = max(deadline, datetime.now(UTC)) + timedelta(milliseconds=10)
        self.scheduler.add_job(
            self._wake, "date", run_date=when, id=self.JOB, replace_existing=True
        )
