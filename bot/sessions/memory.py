"""Agent memory: notes an agent keeps for one repository, across its sessions (blocking SQL).

A note is named by (host, repo, agent, key); writing a name again replaces its value.
One agent never reads another agent's notes, nor one repository's notes in another.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, delete, select

from bot.clock import utcnow
from bot.db import insert_ignoring_conflicts
from bot.db.models import AgentMemory

MAX_KEY = 200  # characters; the column's width
MAX_VALUE = 20_000  # characters of one note
MAX_NOTES = 500  # per agent and repository (by default): memory is for notes, not a database

EMPTY_KEY = "a memory note needs a non-empty key"
LONG_KEY = "a memory key is at most {most} characters; got {got}"
LONG_VALUE = (
    "a memory note is at most {most} characters; got {got} (keep notes short, or split them)"
)
TOO_MANY = "this agent already keeps {most} notes in this repository; delete one first"
NO_OWNER = "a memory note needs its host, repository and agent"
NUL = "a memory {what} cannot hold NUL characters"


def _owner(host: str, repo: str, agent_id: str) -> None:
    if not (host and repo and agent_id):
        raise ValueError(NO_OWNER)


def _key(key: str) -> str:
    """The key as stored: surrounding blanks dropped, so ` plan` and `plan` are one note."""
    name = key.strip()
    if "\x00" in name:
        raise ValueError(NUL.format(what="key"))
    if not name:
        raise ValueError(EMPTY_KEY)
    if len(name) > MAX_KEY:
        raise ValueError(LONG_KEY.format(most=MAX_KEY, got=len(name)))
    return name


class MemoryStore:
    """What `memory_write` and `memory_read` keep and read; run with `asyncio.to_thread`."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_notes: int = MAX_NOTES,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.max_notes = max_notes
        self._insert = insert_ignoring_conflicts(engine)

    def write(
        self,
        host: str,
        repo: str,
        agent_id: str,
        key: str,
        value: str,
        session_id: str | None,
    ) -> None:
        """Keep `value` under `key`, replacing what was there; ValueError for a bad key,
        a value that is too long, or one note too many."""
        _owner(host, repo, agent_id)
        name = _key(key)
        if len(value) > MAX_VALUE:
            raise ValueError(LONG_VALUE.format(most=MAX_VALUE, got=len(value)))
        if "\x00" in value:
            raise ValueError(NUL.format(what="note"))
        mine = (
            AgentMemory.host == host,
            AgentMemory.repo == repo,
            AgentMemory.agent_id == agent_id,
        )
        with self.engine.begin() as conn:
            known = conn.execute(select(AgentMemory.key).where(*mine)).scalars().all()
            if name not in known and len(known) >= self.max_notes:
                raise ValueError(TOO_MANY.format(most=self.max_notes))
            now = self.clock()
            statement = self._insert(AgentMemory).values(
                host=host,
                repo=repo,
                agent_id=agent_id,
                key=name,
                value=value,
                session_id=session_id,
                updated_at=now,
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["host", "repo", "agent_id", "key"],
                    set_={"value": value, "session_id": session_id, "updated_at": now},
                )
            )

    def read(self, host: str, repo: str, agent_id: str, key: str | None = None) -> dict[str, str]:
        """One note (`{key: value}`, or `{}` when there is none), or every note, by key."""
        _owner(host, repo, agent_id)
        query = select(AgentMemory.key, AgentMemory.value).where(
            AgentMemory.host == host,
            AgentMemory.repo == repo,
            AgentMemory.agent_id == agent_id,
        )
        if key is not None:
            query = query.where(AgentMemory.key == _key(key))
        with self.engine.connect() as conn:
            notes = {str(k): str(v) for k, v in conn.execute(query)}
        # Sorted here, not by ORDER BY: the databases' collations differ.
        return dict(sorted(notes.items()))

    def delete(self, host: str, repo: str, agent_id: str, key: str) -> bool:
        """Forget one note; False when there was none."""
        _owner(host, repo, agent_id)
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(AgentMemory).where(
                    AgentMemory.host == host,
                    AgentMemory.repo == repo,
                    AgentMemory.agent_id == agent_id,
                    AgentMemory.key == _key(key),
                )
            )
            return bool(result.rowcount)
