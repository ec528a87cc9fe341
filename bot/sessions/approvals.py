"""Change sets and approval gates, in the database (blocking calls; run them in a thread).

An agent's `propose_change` records a change set and opens a gate on it in one
transaction; the session waits (`awaiting_approval`) until a maintainer decides. A gate
is decided once: the conditional UPDATE from `waiting` lets exactly one decision win,
however many comments, reviews or processes race for it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, select, update
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db.lean import Lean
from bot.db.models import ApprovalGate, ChangeSet, SessionRow
from bot.diffs import FileStat
from bot.sessions.store import add_event
from bot.sessions.store_base import MAX_LINE

WAITING, APPROVED, CHANGES_REQUESTED, STALE, CANCELLED = (
    "waiting",
    "approved",
    "changes_requested",
    "stale",
    "cancelled",
)
PROPOSED, APPLIED, CONFLICT, FAILED, REJECTED = (
    "proposed",
    "applied",
    "conflict",
    "failed",
    "rejected",
)
AWAITING = "awaiting_approval"
IDLE = "idle"


@dataclass(frozen=True)
class FileContent:
    path: str
    content: str | None  # None: the file is deleted; base64 when `binary`
    stat: FileStat | None = None  # its diffstat line (None in change sets older than it)
    mode: str | None = None  # git's mode (100644, 100755, 120000); None: as at the base
    binary: bool = False  # `content` is the file's bytes in base64 (not UTF-8 text)
    # git's mode of the file at the base, when it was not a plain file (100755, 120000) or
    # not there (000000); None: a plain file, or not known (change sets older than it)
    base_mode: str | None = None

    def data(self) -> bytes | None:
        """The file's new bytes (None: deleted)."""
        if self.content is None:
            return None
        return base64.b64decode(self.content) if self.binary else self.content.encode()


def _file(entry: dict[str, Any]) -> FileContent:
    path = str(entry["path"])
    stat = None
    if "change" in entry:
        stat = FileStat(
            path, str(entry["change"]), int(entry.get("added", 0)), int(entry.get("removed", 0))
        )
    mode = entry.get("mode")
    binary = entry.get("encoding") == "base64"
    base_mode = entry.get("base_mode")
    return FileContent(
        path,
        entry.get("content"),
        stat,
        None if mode is None else str(mode),
        binary,
        None if base_mode is None else str(base_mode),
    )


def _entry(item: FileContent) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": item.path, "content": item.content}
    if item.mode is not None:
        entry["mode"] = item.mode
    if item.binary:
        entry["encoding"] = "base64"
    if item.base_mode is not None:
        entry["base_mode"] = item.base_mode
    if item.stat is not None:
        entry.update(change=item.stat.change, added=item.stat.added, removed=item.stat.removed)
    return entry


@dataclass(frozen=True)
class ChangeSetInfo:
    id: int
    session_id: str
    title: str
    description: str
    files: tuple[FileContent, ...]
    base_branch: str
    base_sha: str
    status: str
    branch: str | None
    commit_sha: str | None
    pull_number: int | None
    pull_url: str | None
    error: str | None


@dataclass(frozen=True)
class GateInfo:
    id: int
    session_id: str
    change_set_id: int | None
    subject: str
    pinned_sha: str | None
    status: str
    decided_by: str | None
    decided_sha: str | None
    decision_text: str | None
    created_at: datetime
    decided_at: datetime | None


def _change_set(row: Any) -> ChangeSetInfo:
    """A change set from its row (an entity or a Core row)."""
    return ChangeSetInfo(
        id=row.id,
        session_id=row.session_id,
        title=row.title,
        description=row.description,
        files=tuple(_file(f) for f in row.files),
        base_branch=row.base_branch,
        base_sha=row.base_sha,
        status=row.status,
        branch=row.branch,
        commit_sha=row.commit_sha,
        pull_number=row.pull_number,
        pull_url=row.pull_url,
        error=row.error,
    )


def _gate(row: Any) -> GateInfo:
    """A gate from its row (an entity or a Core row)."""
    return GateInfo(
        id=row.id,
        session_id=row.session_id,
        change_set_id=row.change_set_id,
        subject=row.subject,
        pinned_sha=row.pinned_sha,
        status=row.status,
        decided_by=row.decided_by,
        decided_sha=row.decided_sha,
        decision_text=row.decision_text,
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


_GATES = cast(Table, ApprovalGate.__table__)
_WAITING_GATE = Lean(
    select(_GATES)
    .where(_GATES.c.session_id == bindparam("sid"), _GATES.c.status == WAITING)
    .order_by(_GATES.c.id.desc())
    .limit(1)
)

_SESSION_GATES = Lean(
    select(_GATES).where(_GATES.c.session_id == bindparam("sid")).order_by(_GATES.c.id)
)


class ApprovalStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def _event(self, session: Session, session_id: str, kind: str, data: dict[str, Any]) -> None:
        add_event(session, session_id, self.clock(), kind, data)

    def propose(
        self,
        session_id: str,
        *,
        title: str,
        description: str,
        files: Sequence[FileContent],
        base_branch: str,
        base_sha: str,
        pinned_sha: str | None,
        diff: str,
    ) -> tuple[ChangeSetInfo, GateInfo]:
        """Record a change set and open a gate on it (an earlier waiting gate of the
        session is superseded: its proposal is replaced)."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            for old in session.execute(
                select(ApprovalGate).where(
                    ApprovalGate.session_id == session_id, ApprovalGate.status == WAITING
                )
            ).scalars():
                old.status, old.decided_at = CANCELLED, now
                old.decision_text = "superseded by a newer proposal"
                if old.change_set_id is not None:
                    superseded = session.get(ChangeSet, old.change_set_id)
                    if superseded is not None and superseded.status == PROPOSED:
                        superseded.status, superseded.updated_at = REJECTED, now
            change = ChangeSet(
                session_id=session_id,
                title=title,
                description=description,
                files=[_entry(f) for f in files],
                base_branch=base_branch,
                base_sha=base_sha,
                status=PROPOSED,
                created_at=now,
                updated_at=now,
            )
            session.add(change)
            session.flush()
            gate = ApprovalGate(
                session_id=session_id,
                change_set_id=change.id,
                subject=f"change set #{change.id}: {title}",
                pinned_sha=pinned_sha,
                status=WAITING,
                created_at=now,
            )
            session.add(gate)
            session.flush()
            self._event(
                session,
                session_id,
                "change_proposed",
                {
                    "change_set": change.id,
                    "gate": gate.id,
                    "title": title,
                    "description": description,
                    "base": f"{base_branch}@{base_sha}",
                    "pinned_sha": pinned_sha,
                    "diff": diff,
                    "files": [
                        {k: v for k, v in _entry(f).items() if k != "content"} for f in files
                    ],
                },
            )
            self._event(
                session,
                session_id,
                "approval_requested",
                {"gate": gate.id, "subject": gate.subject, "pinned_sha": pinned_sha},
            )
            return _change_set(change), _gate(gate)

    def open_gate(self, session_id: str, subject: str, pinned_sha: str | None) -> GateInfo:
        """A gate on the session; it takes over the newest change set still proposed by
        the session or one of its delegations (whose own gate is then withdrawn)."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            family = select(SessionRow.id).where(
                (SessionRow.id == session_id) | (SessionRow.parent_id == session_id)
            )
            change = session.execute(
                select(ChangeSet)
                .where(ChangeSet.session_id.in_(family), ChangeSet.status == PROPOSED)
                .order_by(ChangeSet.id.desc())
            ).scalar()
            for old in session.execute(
                select(ApprovalGate).where(
                    ApprovalGate.session_id.in_(family), ApprovalGate.status == WAITING
                )
            ).scalars():
                old.status, old.decided_at = CANCELLED, now
                old.decision_text = "handed to a newer gate"
            if change is not None:  # older proposals of the family are superseded by it
                for older in session.execute(
                    select(ChangeSet).where(
                        ChangeSet.session_id.in_(family),
                        ChangeSet.status == PROPOSED,
                        ChangeSet.id != change.id,
                    )
                ).scalars():
                    older.status, older.updated_at = REJECTED, now
            gate = ApprovalGate(
                session_id=session_id,
                change_set_id=None if change is None else change.id,
                subject=subject
                if change is None
                else f"{subject} (change set #{change.id}: {change.title})",
                pinned_sha=pinned_sha,
                status=WAITING,
                created_at=now,
            )
            session.add(gate)
            session.flush()
            self._event(
                session,
                session_id,
                "approval_requested",
                {
                    "gate": gate.id,
                    "subject": gate.subject,
                    "pinned_sha": pinned_sha,
                    "change_set": gate.change_set_id,
                },
            )
            return _gate(gate)

    def waiting_gate(self, session_id: str) -> GateInfo | None:
        # Asked at the end of every turn: a prebuilt statement, run the short way.
        with self.engine.connect() as conn:
            row = _WAITING_GATE.first(conn, {"sid": session_id})
            return None if row is None else _gate(row)

    def gates(self, session_id: str, conn: Connection | None = None) -> list[GateInfo]:
        """The session's gates (read for every status comment: a prebuilt statement, run
        the short way), in `conn`'s transaction when given."""
        if conn is None:
            with self.engine.connect() as own:
                return self.gates(session_id, own)
        return [_gate(row) for row in _SESSION_GATES.rows(conn, {"sid": session_id})]

    def change_sets(self, session_id: str, conn: Connection | None = None) -> list[ChangeSetInfo]:
        """The session's change sets, and those its gates took over (a delegation's); in
        `conn`'s transaction when given (a status version is rendered inside its own: a
        second connection opened there would wait for the first's write lock on SQLite)."""
        if conn is None:
            with self.engine.connect() as own:
                return self.change_sets(session_id, own)
        taken = select(ApprovalGate.change_set_id).where(
            ApprovalGate.session_id == session_id, ApprovalGate.change_set_id.is_not(None)
        )
        table = cast(Table, ChangeSet.__table__)
        rows = conn.execute(
            select(table)
            .where((table.c.session_id == session_id) | table.c.id.in_(taken))
            .order_by(table.c.id)
        )
        return [_change_set(row) for row in rows]

    def last_applied(self, session_id: str) -> ChangeSetInfo | None:
        """The newest change set applied in the session's line of work (it and the
        sessions it resumes), which opened a pull/merge request: a later approval pushes
        to that one."""
        with Session(self.engine) as session:
            line: list[str] = []
            sid: str | None = session_id
            while sid is not None and sid not in line and len(line) < MAX_LINE:
                line.append(sid)
                sid = session.execute(
                    select(SessionRow.resumed_from).where(SessionRow.id == sid)
                ).scalar_one_or_none()
            row = session.execute(
                select(ChangeSet)
                .where(
                    ChangeSet.session_id.in_(line),
                    ChangeSet.status == APPLIED,
                    ChangeSet.pull_number.is_not(None),
                    ChangeSet.branch.is_not(None),
                )
                .order_by(ChangeSet.id.desc())
            ).scalar()
            return None if row is None else _change_set(row)

    def change_set(self, change_set_id: int) -> ChangeSetInfo | None:
        with Session(self.engine) as session:
            row = session.get(ChangeSet, change_set_id)
            return None if row is None else _change_set(row)

    def decide(
        self,
        gate_id: int,
        status: str,
        *,
        by: str,
        sha: str | None,
        text: str | None,
        how: str,
    ) -> GateInfo | None:
        """Settle a waiting gate; None when it was no longer waiting (decided already)."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            won = session.execute(
                update(ApprovalGate)
                .where(ApprovalGate.id == gate_id, ApprovalGate.status == WAITING)
                .values(
                    status=status,
                    decided_by=by,
                    decided_sha=sha,
                    decision_text=text,
                    decided_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None
            gate = session.get(ApprovalGate, gate_id, populate_existing=True)
            assert gate is not None
            kind = {APPROVED: "approved", CHANGES_REQUESTED: "changes_requested"}.get(
                status, status
            )
            self._event(
                session,
                gate.session_id,
                kind,
                {"gate": gate.id, "by": by, "sha": sha, "text": text, "how": how},
            )
            return _gate(gate)

    def settle_change_set(self, change_set_id: int, **values: Any) -> ChangeSetInfo:
        with Session(self.engine) as session, session.begin():
            row = session.get(ChangeSet, change_set_id)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = self.clock()
            session.flush()
            self._event(
                session,
                row.session_id,
                f"change_{row.status}",
                {
                    "change_set": row.id,
                    "branch": row.branch,
                    "commit": row.commit_sha,
                    "pull": row.pull_number,
                    "url": row.pull_url,
                    "error": row.error,
                },
            )
            return _change_set(row)

    def set_state(self, session_id: str, state: str, *, only_from: str) -> bool:
        """Move a session between idle and awaiting_approval (conditional on its state)."""
        with Session(self.engine) as session, session.begin():
            won = session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.state == only_from)
                .values(state=state, updated_at=self.clock())
                .execution_options(synchronize_session=False)
            )
            return bool(won.rowcount == 1)  # type: ignore[attr-defined]
