"""Spawned sub-agents: `spawn_agent` (blocking or not) and the tools that follow them.

A blocking spawn is a delegation: the child's turn runs inside the parent's and its
output is the tool's result. A non-blocking spawn launches the child and answers its
task id at once; the child's turns are then taken by any process's turn runner like a
thread's session, and when the child stops working its result is queued as the
parent's input (kind `spawn`), which wakes the parent for a new turn. The spawn rows
live in the database (bot.sessions.spawn_store), so results survive a worker's death:
a sweep settles any spawn whose child ended while nobody was there to settle it.

Limits are those of delegations: the coordinator's `maxDelegations` (blocking and
non-blocking spawns and delegations count together), its sub-agents (`agentIds`), and
a depth of MAX_DEPTH sessions below a thread's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from bot.agents import base as b
from bot.agents.base import ToolResult, tool_json
from bot.sessions.agents import narrowed, parse_tool_choice, run_record
from bot.sessions.spawn_store import (
    RUNNING,
    SPAWN_STATES,
    SpawnInfo,
    SpawnStore,
    task_number,
)
from bot.sessions.store import CANCELLED, DONE, SessionInfo
from bot.sessions.tools import SessionTools
from bot.sessions.turns import DELEGATION_LIMIT, UNKNOWN_SUB_AGENT, TurnRunner, child_result

log = logging.getLogger(__name__)

MAX_DEPTH = 3  # sessions below a thread's: a spawn's spawn's spawn, and no deeper
TOO_DEEP = "spawning is limited to {most} levels below the thread's session"
NOT_A_SUB_AGENT = "cannot spawn {agent!r}; sub-agents: {known}"
NO_SUCH_TASK = "no task {task!r} in this session; spawn_list shows them"
STILL_RUNNING = "{task} is still running; its result comes as input when it ends"
STARTED = (
    "{task} started: agent {agent} in session {child}. Its result arrives as your input "
    "when it ends; your turn may end meanwhile."
)


def _outcome(agent_id: str, done: SessionInfo) -> tuple[bool, str]:
    result = child_result(agent_id, done)
    return result.ok, result.content


class Spawner:
    """Carries out the spawn tools for the turns of one process's runner, and settles
    non-blocking spawns whose children end."""

    def __init__(self, runner: TurnRunner) -> None:
        self.runner = runner
        self.service = runner.service
        self.store = SpawnStore(runner.service.store.engine, clock=runner.service.clock)

    # --------------------------------------------------------------- the tools

    async def call(
        self,
        parent: SessionInfo,
        tools: SessionTools,
        name: str,
        args: Mapping[str, Any],
        call_id: str,
        ticket: int,
    ) -> ToolResult:
        try:
            if name == b.SPAWN_AGENT:
                return await self._spawn(parent, tools, args, call_id, ticket)
            if name in (b.SPAWN_LIST, b.TASK_LIST):
                return await self._list(parent, name, args)
            number = task_number(args.get("task_id"))
            found = None
            if number is not None:
                found = await asyncio.to_thread(self.store.get, parent.id, number)
            if found is None:
                return ToolResult(False, NO_SUCH_TASK.format(task=args.get("task_id")))
            if name == b.SPAWN_STATUS:
                return ToolResult(True, tool_json(found.summary()))
            if name == b.SPAWN_RESULT:
                if found.state == RUNNING:
                    return ToolResult(False, STILL_RUNNING.format(task=found.task_id))
                return ToolResult(bool(found.ok), found.result or "")
            return await self._cancel(parent, found)
        except ValueError as exc:
            return ToolResult(False, f"{name}: {exc}")

    async def _spawn(
        self,
        parent: SessionInfo,
        tools: SessionTools,
        args: Mapping[str, Any],
        call_id: str,
        ticket: int,
    ) -> ToolResult:
        service, coordinator = self.service, tools.agent
        agent_id = str(args.get("agent") or args.get("agent_id") or "").strip()
        task = str(args.get("task") or "").strip()
        if agent_id not in coordinator.agent_ids:
            known = ", ".join(coordinator.agent_ids) or "none"
            return ToolResult(False, NOT_A_SUB_AGENT.format(agent=agent_id, known=known))
        if not task:
            return ToolResult(False, "spawn_agent needs a task with all its context")
        active = args.get("active_tools")
        if active is not None and (
            not isinstance(active, list) or not all(isinstance(t, str) for t in active)
        ):
            return ToolResult(False, "active_tools: expected a list of tool names")
        raw_choice = args.get("tool_choice")
        choice = None if raw_choice is None else parse_tool_choice(raw_choice)
        try:
            agent = narrowed(service.agents.agent(agent_id), active, choice)
        except KeyError:
            return ToolResult(False, UNKNOWN_SUB_AGENT.format(agent=agent_id))
        if await asyncio.to_thread(self.store.depth, parent.id) >= MAX_DEPTH:
            return ToolResult(False, TOO_DEEP.format(most=MAX_DEPTH))
        most = coordinator.max_delegations
        number = None
        if parent.delegations + ticket <= most:
            number = await asyncio.to_thread(service.store.take_delegation, parent.id, most)
        if number is None:
            await service.note(parent, "delegation_refused", {"agent": agent_id, "call": call_id})
            return ToolResult(False, DELEGATION_LIMIT.format(most=most))
        nonblocking = bool(args.get("nonblocking"))
        child = await self.runner.launch_child(
            parent, agent, task, number, run_record(agent, choice)
        )
        spawn = await asyncio.to_thread(
            self.store.add,
            parent.id,
            number,
            child.id,
            agent.id,
            task,
            nonblocking=nonblocking,
            active_tools=active,
            tool_choice=None if choice is None else asdict(choice),
        )
        await service.note(
            parent,
            "spawn_started",
            {"turn": tools.turn, "call": call_id, **spawn.summary()},
        )
        if nonblocking:
            service.wake_runner()  # any runner may take the child's turn now
            text = STARTED.format(task=spawn.task_id, agent=agent.id, child=child.id)
            return ToolResult(True, text)
        done = await self.runner.run_child(child.id, {})
        result = child_result(agent.id, done)
        if done.live:
            await service.close(done, DONE, by=f"session:{parent.id}")
        await asyncio.to_thread(
            self.store.finish, parent.id, number, ok=result.ok, result=result.content
        )
        await service.note(
            parent,
            "spawn_finished",
            {"turn": tools.turn, "call": call_id, **spawn.summary(), "output": result.content},
        )
        return result

    async def _list(self, parent: SessionInfo, name: str, args: Mapping[str, Any]) -> ToolResult:
        if name == b.SPAWN_LIST:
            state = args.get("state")
            if state is not None and state not in SPAWN_STATES:
                raise ValueError(f"state is one of {', '.join(SPAWN_STATES)}")
            found = await asyncio.to_thread(self.store.of, parent.id, state)
            return ToolResult(True, tool_json([s.summary() for s in found]))
        # task_list: every child session (spawns and delegations), with its spawn if any.
        spawns = {s.child_id: s for s in await asyncio.to_thread(self.store.of, parent.id)}
        children = await asyncio.to_thread(self.service.store.children, parent.id)
        work = []
        for child in children:
            spawn = spawns.get(child.id)
            work.append(
                {
                    # Only a spawn has a task id the spawn tools take; a delegation ended
                    # with the turn that made it.
                    "task_id": spawn.task_id if spawn else None,
                    "kind": "spawn" if spawn else "delegation",
                    "agent": child.agent_id,
                    "session": child.id,
                    "task": child.task,
                    "state": spawn.state if spawn else child.state,
                    "turns": child.turns,
                    "tokens": {"input": child.tokens_in, "output": child.tokens_out},
                }
            )
        return ToolResult(True, tool_json(work))

    async def _cancel(self, parent: SessionInfo, spawn: SpawnInfo) -> ToolResult:
        if not await asyncio.to_thread(self.store.cancel, parent.id, spawn.number):
            return ToolResult(False, f"{spawn.task_id} has ended already ({spawn.state})")
        child = await asyncio.to_thread(self.service.store.get, spawn.child_id)
        if child is not None and child.live:
            # Closed: a turn it runs elsewhere stops at its next step; here, at once.
            await self.service.close(child, CANCELLED, by=f"session:{parent.id}")
        self.runner.stop_local(spawn.child_id)
        await self.service.note(parent, "spawn_cancelled", spawn.summary())
        return ToolResult(True, f"{spawn.task_id} cancelled")

    # ----------------------------------------------------------- settling

    async def running(self, session_id: str) -> int:
        return await asyncio.to_thread(self.store.running, session_id)

    async def child_turn_ended(self, child: SessionInfo) -> None:
        if child.live and child.state != "idle":
            return  # awaiting an approval: it is not done
        await self._settle(child.id)

    async def running_child(self, session_id: str) -> bool:
        return await asyncio.to_thread(self.store.running_child, session_id)

    async def sweep(self) -> int:
        """Settle spawns whose child ended while no process settled them (a worker died
        in between); how many were settled."""
        settled = 0
        for child_id in await asyncio.to_thread(self.store.unsettled):
            settled += await self._settle(child_id)
        return settled

    async def _settle(self, child_id: str) -> bool:
        done = await asyncio.to_thread(self.store.settle, child_id, _outcome)
        if done is None:
            return False
        child = await asyncio.to_thread(self.service.store.get, child_id)
        if child is not None and child.live:  # ended its turn without task_completed
            await self.service.close(child, DONE, by=f"session:{done.spawn.parent_id}")
        log.info(
            "spawn %s of %s settled: %s", done.spawn.task_id, done.spawn.parent_id, done.spawn.state
        )
        if done.queued:
            self.service.wake_runner()
        return True
