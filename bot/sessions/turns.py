"""Running turns: claim a session's turn, run its engine, settle it; delegations."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from bot import metrics
from bot.agents.base import (
    AgentSpec,
    BudgetExceeded,
    EngineError,
    ToolResult,
    Turn,
    TurnInput,
)
from bot.clock import worker_name
from bot.db.outage import Outage
from bot.log import bind
from bot.loops import nap
from bot.sessions.agents import spec_record
from bot.sessions.context import context_for
from bot.sessions.mcp_tools import McpToolbox
from bot.sessions.service_core import Seat, ServiceCore
from bot.sessions.store import (
    CANCELLED,
    DONE,
    FAILURE,
    InputInfo,
    Launch,
    SessionInfo,
)
from bot.sessions.store_cancel import Stop
from bot.sessions.tools import SessionTools, TurnAbandoned

log = logging.getLogger(__name__)

DELEGATION_LIMIT = "delegation limit reached: at most {most} per session; nothing was started"
UNKNOWN_SUB_AGENT = "no agent {agent!r} is configured"
DELEGATION_FAILED = "the delegation to {agent} (session {id}) failed: {error}"
DELEGATION_UNFINISHED = "the delegation to {agent} (session {id}) ended ({state}) without output"
TURN_STOPPED = (
    "Stopped turn {turn} of session `{id}` (asked by {by}). The session stays open: "
    "comment to give it more to do."
)

SPAWN_STOPPED = (
    "Stopped turn {turn} of session `{id}` (asked by {by}); it was a spawned task, which "
    "ends cancelled."
)


class SpawnHooks(Protocol):
    """What the turn runner asks of the spawns (bot.sessions.spawns), when wired."""

    async def call(
        self,
        parent: SessionInfo,
        tools: SessionTools,
        name: str,
        args: Mapping[str, Any],
        call_id: str,
        ticket: int,
    ) -> ToolResult:
        """Carry out one spawn tool (`bot.sessions.tools.SpawnCall`)."""
        ...

    async def child_turn_ended(self, child: SessionInfo) -> None:
        """A spawned session's turn ended: settle its spawn if it is done."""
        ...

    async def running_child(self, session_id: str) -> bool:
        """Whether the session is a running non-blocking spawn's."""
        ...

    async def running(self, session_id: str) -> int:
        """How many of the session's non-blocking spawns still run or wait to be read."""
        ...


def child_result(agent_id: str, done: SessionInfo) -> ToolResult:
    """What a delegation's (or spawn's) child session came to, as its tool result."""
    if done.state == "failed":
        problem = str(done.progress.get("problem") or "failed")
        return ToolResult(
            False, DELEGATION_FAILED.format(agent=agent_id, id=done.id, error=problem)
        )
    if done.completed:
        return ToolResult(True, done.output or "")
    text = DELEGATION_UNFINISHED.format(agent=agent_id, id=done.id, state=done.state)
    return ToolResult(False, text)


def turn_params(
    session: SessionInfo, inputs: list[InputInfo], delegated: Mapping[str, Any]
) -> dict[str, Any]:
    """A turn's prompt-level runtimeParams: the session's (API overrides), under those of
    the prompt it reads (claimed inputs share theirs), under a delegation's own."""
    asked = inputs[0].params if inputs else None
    return {**(session.options.runtime_params or {}), **(asked or {}), **delegated}


class TurnRunner:
    """Runs sessions' turns: claims one, runs its engine, settles it; repeats."""

    def __init__(
        self,
        service: ServiceCore,
        *,
        lease_seconds: float = 120.0,
        poll_seconds: float = 1.0,
        name: str | None = None,
        concurrency: int = 8,
        cancel_poll_seconds: float = 0.5,
    ) -> None:
        self.service = service
        self.cancel_poll_seconds = cancel_poll_seconds
        # The engine task of each turn this runner has in hand, by session id; the
        # sessions whose turn it was asked to stop (by whom), and what asks the database.
        # (A list: a turn asked for by session id can be run again once its lease lapses.)
        self._engines: dict[str, list[asyncio.Task[None]]] = {}
        self._stopped: dict[str, Stop] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self.name = name or "turns-" + worker_name()
        self.wakeup = asyncio.Event()
        self.spawns: SpawnHooks | None = None
        self.turn_tasks: dict[str, asyncio.Task[None]] = {}  # session id -> its running turn
        self._running: set[asyncio.Task[None]] = set()
        self._seats = 0  # places kept for launches that claim their first turn (`seat`)
        self._open = False  # `run` is claiming turns
        # Whether a turn's end should make the runner look again: it was woken (or looked)
        # while turns ran, and a session mid-turn is not taken, so input that came for one
        # is still waiting; or every place was taken.
        self._after_turn = False

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run turns, up to `concurrency` at once (each of another session),
        until `stop`; turns in hand finish first."""
        outage = Outage(log, f"turn runner {self.name}")
        self._open = True
        while not stop.is_set():
            self.wakeup.clear()  # before looking: a wake during the look is kept
            claimed, more = None, False
            self._after_turn = self._after_turn or bool(self._running)
            if len(self._running) + self._seats < self.concurrency:
                try:
                    # Paused repositories (asked in the claim) and spent daily limits
                    # start no turn; its own turns (lapsed leases or not) are not taken.
                    claimed, more = await self.service.calls(self._claim, tuple(self.turn_tasks))
                    outage.ok()
                except Exception as exc:
                    outage.failed(exc, "claim a turn")
            if claimed is not None:
                self._start(claimed)
                if more:  # others were waiting: look again at once
                    continue
            await nap(self.wakeup, stop, self.poll_seconds)
        self._open = False
        while self._running:  # (a launch may hand over a turn while these finish)
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def seat(self) -> Seat | None:
        """Keep a place for the first turn of a session about to be launched, which the
        launch claims in its own transaction (one transaction, and one status version,
        fewer than a claim of its own): the owner and lease to claim it with, or None
        when every place is taken or the runner is not running. Hand the place on with
        `adopt`, whatever the launch came to."""
        if not self._open or len(self._running) + self._seats >= self.concurrency:
            return None
        self._seats += 1
        return Seat(self.name, self.lease_seconds)

    def adopt(self, claimed: tuple[SessionInfo, list[InputInfo]] | None) -> None:
        """Run the turn a launch claimed on a `seat` (None: it claimed none, and the
        place is free again)."""
        full = len(self._running) + self._seats >= self.concurrency
        self._seats -= 1
        if claimed is not None:
            self._start(claimed)
        elif full:
            self.wakeup.set()  # the kept place may have stopped a claim: look again

    def _start(self, claimed: tuple[SessionInfo, list[InputInfo]]) -> None:
        task = asyncio.create_task(self._run_logged(*claimed))
        self._running.add(task)
        self.turn_tasks[claimed[0].id] = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        full = len(self._running) + self._seats >= self.concurrency
        self._running.discard(task)
        for sid in [sid for sid, t in self.turn_tasks.items() if t is task]:
            del self.turn_tasks[sid]
        if full or self._after_turn:
            self._after_turn = False
            self.wakeup.set()  # look for more

    def _claim(
        self, running: tuple[str, ...]
    ) -> tuple[tuple[SessionInfo, list[InputInfo]] | None, bool]:
        """Blocking: the holds (pauses, spent daily limits) and the claim, in one call; and
        whether other sessions were seen waiting."""
        held = self.service.holds.for_claims()
        return self.service.store.claim_turn_and_more(
            self.name,
            lease_seconds=self.lease_seconds,
            held=held,
            running=running,
            # "working" goes out with the claim, of the row as the claim returns it
            after=functools.partial(self.service.status_in, counted=True),
        )

    def stop_local(self, session_id: str) -> bool:
        """Stop the session's turn if this process runs it in its loop (a cancelled spawn)."""
        task = self.turn_tasks.get(session_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def run_once(self) -> bool:
        claimed, _ = await self.service.calls(self._claim, ())
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
        bound = bind(
            session=session.id,
            thread=session.thread_key or session.thread.key,
            installation=session.installation_id,
        )
        heartbeat = asyncio.create_task(self._heartbeat(session.id))
        timer, result = metrics.Timer(), "crashed"
        try:
            # The agent's MCP servers (if any) are connected for the turn and closed
            # with `stack` when it is over.
            async with contextlib.AsyncExitStack() as stack:
                with bound:
                    await self._turn(session, inputs, params or {}, stack)
            result = "ran"
        finally:
            metrics.count_turn(result, timer.seconds())
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _turn(
        self,
        session: SessionInfo,
        inputs: list[InputInfo],
        params: Mapping[str, Any],
        stack: contextlib.AsyncExitStack,
    ) -> None:
        service = self.service
        service.wake_sender()  # for the status comment the claim queued
        service.deadline_changed()  # its time limit runs again while the turn does
        try:
            agent = service.agent_for(session)
        except KeyError:
            await service.close_for_removed_agent(session)
            return
        workspace = None
        if service.workspaces is not None:
            workspace = await service.workspaces.open_for_turn(service, session, agent)
        external = None
        if agent.mcp_servers:
            workdir = workspace.root if workspace is not None else None
            external = await McpToolbox.open(agent, stack, workdir)
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
            workspace=workspace,
            external=external,
            spawn=None if self.spawns is None else self.spawns.call,
        )
        for problem in external.problems if external is not None else ():
            await tools.note("mcp_problem", problem)
        # A long conversation may take a while to read: not on the loop's thread. A new
        # session's first turn (not resumed) has a few rows at most: a short store call.
        if session.turns <= 1 and session.resumed_from is None:
            history = await service.calls(service.store.conversation, session.id)
        else:
            history = await asyncio.to_thread(service.store.conversation, session.id)
        thread_context = ""
        if agent.thread_context:
            thread_context = await context_for(
                session,
                store=service.store,
                reader=service.context,
                host_for=service.host_for,
                note=service.note,
            )
        turn = Turn(
            session_id=session.id,
            number=session.turns,
            agent=agent,
            task=session.task,
            inputs=tuple(TurnInput(i.kind, i.author, i.body) for i in inputs),
            thread_key=session.thread_key or session.thread.key,
            history=tuple(history),
            params=turn_params(session, inputs, params),
            context={
                "repository": f"{session.thread.host}:{session.thread.repo}",
                "thread": session.thread.key,
                "session": session.id,
                "parent": session.parent_id,
            },
            external_tools=tuple(external.specs) if external is not None else (),
            thread_context=thread_context,
        )
        error: str | None = None
        stopped: Stop | None = None
        try:
            service.check_budget(session, agent)
            engine = asyncio.create_task(service.agents.engine(agent).run_turn(turn, tools))
            self._engines.setdefault(session.id, []).append(engine)
            self._watch()
            try:
                await engine
            except asyncio.CancelledError:
                stopped = self._stop_asked(session.id)
            finally:
                self._forget(session.id, engine)
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
        if stopped is not None and stopped.closed:
            log.info(
                "session %s closed during turn %d: its engine stopped", session.id, session.turns
            )
            return
        if workspace is not None and service.workspaces is not None:
            await service.workspaces.record_diff(service, session)
        close_reason = None
        keep_open = session.options.keep_open_for_comments and session.parent_id is None
        gate = await self.service.calls(service.approvals.waiting_gate, session.id)
        spawns = self.spawns
        # A non-blocking spawn whose own turn is stopped ends cancelled, closed with the
        # turn (at once: a sweep elsewhere must not settle it idle first).
        ends_spawn = (
            stopped is not None
            and session.parent_id is not None
            and spawns is not None
            and await spawns.running_child(session.id)
        )
        if stopped is not None:
            await self._stopped_turn(session, stopped.by, ends=ends_spawn)
            keep_open = True  # a stopped turn leaves the session idle, never done
        if error is None and tools.completed and not keep_open and gate is None:
            close_reason = DONE
        if close_reason is not None and spawns is not None and await spawns.running(session.id):
            close_reason = None  # its non-blocking spawns' results are to wake it
        if ends_spawn:
            close_reason = CANCELLED
        finished = await self.service.calls(
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
            closed_by=stopped.by if ends_spawn and stopped is not None else None,
            # The status comment goes with the finish, unless a problem is noted first.
            after=None if error else functools.partial(service.status_in, counted=True),
        )
        if finished is None:
            log.info(
                "session %s: turn %d ended after the session was closed", session.id, session.turns
            )
            return
        if error:
            metrics.ERRORS.labels("turn_failed").inc()
            await self.service.calls(service.store.note_problem, session.id, f"{FAILURE}: {error}")
            await service.publish_status(finished)
        service.wake_sender()
        service.deadline_changed()
        if not finished.live and service.workspaces is not None:
            await service.workspaces.close(session.id)
        if finished.parent_id is not None and self.spawns is not None:
            await self.spawns.child_turn_ended(finished)

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
            number = await self.service.calls(store.take_delegation, parent.id, most)
        if number is None:
            await service.note(parent, "delegation_refused", {"agent": agent_id, "call": call_id})
            return ToolResult(False, DELEGATION_LIMIT.format(most=coordinator.max_delegations))
        child = await self.launch_child(parent, agent, task, number, spec_record(agent))
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
        done = await self.run_child(child.id, params)
        result = child_result(agent.id, done)
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

    # ------------------------------------------------------------ stopping turns

    def _stop_asked(self, session_id: str) -> Stop:
        """Why the session's turn was stopped, when its engine was cancelled for that; a
        cancellation from elsewhere (the process shutting down) goes on up."""
        stop = self._stopped.get(session_id)
        current = asyncio.current_task()
        if stop is None or (current is not None and current.cancelling()):
            raise asyncio.CancelledError
        return stop

    async def _stopped_turn(self, session: SessionInfo, by: str, *, ends: bool = False) -> None:
        """Record a stopped turn, end the delegations it was waiting on, say so (`ends`:
        the session closes with it, a spawn's)."""
        service = self.service
        log.info("session %s: turn %d stopped, asked by %s", session.id, session.turns, by)
        await service.note(session, "cancelled", {"turn": session.turns, "by": by})
        for child in await self.service.calls(service.store.children, session.id):
            if child.live:
                await service.close(child, CANCELLED, by=by)
        stopped = SPAWN_STOPPED if ends else TURN_STOPPED
        text = stopped.format(turn=session.turns, id=session.id, by=by)
        await service.reply(session, f"stopped.{session.turns}", text)

    def _watch(self) -> None:
        """Make sure something asks the database for cancel requests while turns run."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_cancels())

    async def _watch_cancels(self) -> None:
        """Every `cancel_poll_seconds` while this runner has turns in hand: one query for
        those to stop (asked to, or closed meanwhile), and each such engine cancelled.
        The request may come from any process; the database carries it."""
        while self._engines:
            await asyncio.sleep(self.cancel_poll_seconds)
            try:
                asked = await self.service.calls(
                    self.service.store.stop_requests, self.name, list(self._engines)
                )
            except Exception as exc:  # the next look may work; the turn runs on meanwhile
                log.warning("runner %s: cannot read cancel requests: %s", self.name, exc)
                continue
            for session_id, stop in asked.items():
                engines = [e for e in self._engines.get(session_id, ()) if not e.done()]
                if engines and session_id not in self._stopped:
                    self._stopped[session_id] = stop
                    for engine in engines:
                        engine.cancel()

    def _forget(self, session_id: str, engine: asyncio.Task[None]) -> None:
        running = self._engines.get(session_id, [])
        if engine in running:
            running.remove(engine)
        if not running:
            self._engines.pop(session_id, None)
            self._stopped.pop(session_id, None)

    async def launch_child(
        self,
        parent: SessionInfo,
        agent: AgentSpec,
        task: str,
        number: int,
        record: dict[str, Any],
    ) -> SessionInfo:
        """A child session of `parent` (its delegation or spawn `number`) for `agent`, with
        `record` as the agent it was launched with; launched once per number."""
        options = replace(
            parent.options,
            keep_open_for_comments=False,
            listen_to_comments=False,
            # The coordinator's API overrides are its own, not its sub-agents'.
            runtime_params=None,
            additional_instructions=None,
            agent_ids=None,
            provider=None,
        )
        launched = await self.service.calls(
            self.service.store.launch,
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
                spec=record,
            ),
            max_live=2**31,
        )
        return launched.session

    async def run_child(self, child_id: str, params: Mapping[str, Any]) -> SessionInfo:
        """Run a child session's turn here and now (a blocking delegation); it as it ends."""
        store = self.service.store
        claimed = await self.service.calls(
            store.claim_turn,
            self.name,
            lease_seconds=self.lease_seconds,
            session_id=child_id,
        )
        if claimed is not None:
            await self._run_claimed(claimed[0], claimed[1], params)
        done = await self.service.calls(store.get, child_id)
        assert done is not None
        return done

    async def _heartbeat(self, session_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await self.service.calls(
                self.service.store.renew_turn, session_id, self.name, self.lease_seconds
            )
