"""Spawns in the shared database (blocking SQL): add, read, cancel and settle them.

Settling a non-blocking spawn is one transaction: the row goes from `running` to its end
state (a conditional UPDATE, so one process wins) and, when the parent is still live,
the result is queued as the parent's input. A worker killed between the child's last
turn and that transaction leaves the row `running`; `unsettled` finds it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db.models import LIVE_STATES, SessionInput, SessionRow, Spawn
from bot.sessions.store_rows import (
    ACTIVE,
    AWAITING,
    BUSY,
    CANCELLED,
    QUEUED,
    _info,
    add_event,
)

RUNNING, DONE, FAILED_SPAWN = "running", "done", "failed"
CANCELLED_SPAWN = "cancelled"
SPAWN_STATES = (RUNNING, DONE, FAILED_SPAWN, CANCELLED_SPAWN)
SPAWN_INPUT = "spawn"  # the input kind of a spawn's result in its parent's queue


def task_id(number: int) -> str:
    return f"task-{number}"


def task_number(text: object) -> int | None:
    """The number in a task id (`task-3`, or just `3`); None if it is not one."""
    raw = str(text or "").strip().removeprefix("task-")
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


@dataclass(frozen=True)
class SpawnInfo:
    parent_id: str
    number: int
    child_id: str
    agent_id: str
    task: str
    nonblocking: bool
    state: str
    ok: bool | None
    result: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def task_id(self) -> str:
        return task_id(self.number)

    def summary(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "agent": self.agent_id,
            "session": self.child_id,
            "task": self.task,
            "nonblocking": self.nonblocking,
            "state": self.state,
            "ok": self.ok,
            "started_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class Settled:
    spawn: SpawnInfo
    queued: bool  # the result went into the parent's input queue (the parent was live)


def _spawn(row: Spawn) -> SpawnInfo:
    return SpawnInfo(
        row.parent_id,
        row.number,
        row.child_id,
        row.agent_id,
        row.task,
        row.nonblocking,
        row.state,
        row.ok,
        row.result,
        row.created_at,
        row.finished_at,
    )


# (agent id, child as it ended) -> (ok, result text); bot.sessions.turns.child_result
Outcome = Callable[[str, Any], tuple[bool, str]]


def result_input(spawn: SpawnInfo) -> str:
    """The parent's input for a finished spawn: which one, how it ended, its output."""
    return f"{spawn.task_id} ({spawn.agent_id}) {spawn.state}:\n{spawn.result or ''}"


class SpawnStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def add(
        self,
        parent_id: str,
        number: int,
        child_id: str,
        agent_id: str,
        task: str,
        *,
        nonblocking: bool,
        active_tools: Sequence[str] | None,
        tool_choice: dict[str, Any] | None,
    ) -> SpawnInfo:
        with Session(self.engine) as session, session.begin():
            row = Spawn(
                parent_id=parent_id,
                number=number,
                child_id=child_id,
                agent_id=agent_id,
                task=task,
                nonblocking=nonblocking,
                state=RUNNING,
                active_tools=None if active_tools is None else list(active_tools),
                tool_choice=tool_choice,
                created_at=self.clock(),
            )
            session.add(row)
            session.flush()
            return _spawn(row)

    def get(self, parent_id: str, number: int) -> SpawnInfo | None:
        with Session(self.engine) as session:
            row = session.execute(
                select(Spawn).where(Spawn.parent_id == parent_id, Spawn.number == number)
            ).scalar_one_or_none()
            return None if row is None else _spawn(row)

    def of(self, parent_id: str, state: str | None = None) -> list[SpawnInfo]:
        """The session's spawns, oldest first (only those in `state`, when given)."""
        query = select(Spawn).where(Spawn.parent_id == parent_id).order_by(Spawn.number)
        if state is not None:
            query = query.where(Spawn.state == state)
        with Session(self.engine) as session:
            return [_spawn(row) for row in session.execute(query).scalars()]

    def running(self, parent_id: str) -> int:
        """How many of the session's non-blocking spawns still run or have a result
        queued that no turn took yet (a session waiting on either must not close)."""
        with Session(self.engine) as session:
            spawns = session.execute(
                select(func.count())
                .select_from(Spawn)
                .where(Spawn.parent_id == parent_id, Spawn.state == RUNNING, Spawn.nonblocking)
            ).scalar_one()
            results = session.execute(
                select(func.count())
                .select_from(SessionInput)
                .where(
                    SessionInput.session_id == parent_id,
                    SessionInput.kind == SPAWN_INPUT,
                    SessionInput.status == QUEUED,
                )
            ).scalar_one()
            return int(spawns) + int(results)

    def running_child(self, child_id: str) -> bool:
        """Whether `child_id` is the session of a running non-blocking spawn."""
        with Session(self.engine) as session:
            found = session.execute(
                select(Spawn.id).where(
                    Spawn.child_id == child_id, Spawn.state == RUNNING, Spawn.nonblocking
                )
            ).first()
            return found is not None

    def finish(self, parent_id: str, number: int, *, ok: bool, result: str) -> bool:
        """End a blocking spawn with its result (its turn ran inside the parent's)."""
        return self._end(parent_id, number, DONE if ok else FAILED_SPAWN, ok, result)

    def cancel(self, parent_id: str, number: int) -> bool:
        """Mark a running spawn cancelled; False if it had ended already."""
        return self._end(parent_id, number, CANCELLED_SPAWN, False, "cancelled")

    def _end(self, parent_id: str, number: int, state: str, ok: bool, result: str) -> bool:
        with Session(self.engine) as session, session.begin():
            won = session.execute(
                update(Spawn)
                .where(Spawn.parent_id == parent_id, Spawn.number == number, Spawn.state == RUNNING)
                .values(state=state, ok=ok, result=result, finished_at=self.clock())
                .execution_options(synchronize_session=False)
            )
            return bool(won.rowcount == 1)  # type: ignore[attr-defined]

    def unsettled(self) -> list[str]:
        """Children of running non-blocking spawns that are no longer working (their turn
        ended, or they were closed): what a sweep settles."""
        with Session(self.engine) as session:
            return list(
                session.execute(
                    select(Spawn.child_id)
                    .join(SessionRow, SessionRow.id == Spawn.child_id)
                    .where(
                        Spawn.state == RUNNING,
                        Spawn.nonblocking,
                        SessionRow.state.not_in((ACTIVE, BUSY, AWAITING)),
                    )
                    .limit(100)
                ).scalars()
            )

    def settle(self, child_id: str, outcome: Outcome) -> Settled | None:
        """Settle the non-blocking spawn whose child is `child_id`, if the child is done
        working; in the same transaction queue its result as the parent's input."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            row = session.execute(
                select(Spawn).where(
                    Spawn.child_id == child_id, Spawn.state == RUNNING, Spawn.nonblocking
                )
            ).scalar_one_or_none()
            child = session.get(SessionRow, child_id)
            if row is None or child is None or child.state in (ACTIVE, BUSY, AWAITING):
                return None
            done = _info(child)
            if done.close_reason == CANCELLED:
                state, ok, text = CANCELLED_SPAWN, False, "cancelled"
            else:
                ok, text = outcome(row.agent_id, done)
                state = DONE if ok else FAILED_SPAWN
            won = session.execute(
                update(Spawn)
                .where(Spawn.id == row.id, Spawn.state == RUNNING)
                .values(state=state, ok=ok, result=text, finished_at=now)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None
            session.refresh(row)
            spawn = _spawn(row)
            parent = session.get(SessionRow, row.parent_id)
            queued = parent is not None and parent.state in LIVE_STATES
            if queued:
                body = result_input(spawn)
                item = SessionInput(
                    session_id=spawn.parent_id,
                    kind=SPAWN_INPUT,
                    author=spawn.task_id,
                    body=body,
                    status=QUEUED,
                    created_at=now,
                )
                session.add(item)
                session.flush()
                data = {"input": item.id, "kind": SPAWN_INPUT, "author": spawn.task_id}
                add_event(
                    session,
                    spawn.parent_id,
                    now,
                    "input",
                    {**data, "body": body, "comment": None, "url": None},
                )
            add_event(
                session,
                spawn.parent_id,
                now,
                "spawn_finished",
                {**spawn.summary(), "output": text, "queued": queued},
            )
            return Settled(spawn, queued)

    def depth(self, session_id: str) -> int:
        """How many parents the session has (0: a session of a thread)."""
        depth = 0
        with Session(self.engine) as session:
            current: str | None = session_id
            while current is not None and depth < 50:
                current = session.execute(
                    select(SessionRow.parent_id).where(SessionRow.id == current)
                ).scalar_one_or_none()
                depth += current is not None
        return depth
