"""The store's input queue and turn lease: inputs in, one turn at a time, settling it."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from bot.db import bound_params, bound_values
from bot.db.lean import Lean, numbered, numbered_params
from bot.db.models import LIVE_STATES, RepoPause, SessionInput, SessionRow, Spawn
from bot.sessions.limits import ANY_HOST, Held, count_usage, day_of
from bot.sessions.store_base import InTransaction, StoreBase
from bot.sessions.store_rows import (
    ACTIVE,
    AWAITING,
    BUSY,
    CLOSED,
    CONSUMED,
    COUNT_STATUS,
    FAILED,
    FAILURE,
    IDLE,
    INPUTS,
    INSERT_EVENT,
    QUEUED,
    SESSIONS,
    TAKEN,
    UNCONSUMED,
    WITHDRAWN,
    InputInfo,
    SessionInfo,
    _info,
    _input,
    _options,
    event_row,
)

# Whether a runner still owns a session's turn (prebuilt: asked before every tool call).
_OWNED = Lean(
    select(SESSIONS.c.id).where(
        SESSIONS.c.id == bindparam("id"),
        SESSIONS.c.state == BUSY,
        SESSIONS.c.turn_owner == bindparam("owner"),
    )
)
# What a claim needs of a session to move its time limit on (`_working_time_limit`).
_LIMIT_INPUTS = Lean(
    select(
        SESSIONS.c.state,
        SESSIONS.c.idle_deadline_at,
        SESSIONS.c.time_limit_at,
        SESSIONS.c.options,
    ).where(SESSIONS.c.id == bindparam("sid"))
)
# Take a session's turn if it is still ready and has inputs waiting; the row as won comes
# back (RETURNING), without reading it again.
_TAKE_TURN = Lean(
    update(SESSIONS)
    .where(
        SESSIONS.c.id == bindparam("sid"),
        or_(
            SESSIONS.c.state.in_((ACTIVE, IDLE)),
            and_(SESSIONS.c.state == BUSY, SESSIONS.c.turn_expires_at < bindparam("now")),
        ),
        exists().where(INPUTS.c.session_id == SESSIONS.c.id, INPUTS.c.status.in_(UNCONSUMED)),
    )
    .values(
        state=BUSY,
        turn_owner=bindparam("owner"),
        turn_expires_at=bindparam("expires"),
        idle_deadline_at=None,
        time_limit_at=bindparam("limit"),
        cancel_requested_at=None,  # a request never outlives its turn
        cancel_requested_by=None,
        # A taken-over turn keeps its number, so its writes keep their keys and whatever
        # the dead runner already wrote is not written again.
        turns=case((SESSIONS.c.state == BUSY, SESSIONS.c.turns), else_=SESSIONS.c.turns + 1),
        updated_at=bindparam("now"),
        # Counted for the status version the claim's `after` queues: the row that comes
        # back is that version's snapshot (no second UPDATE and read of the row).
        status_seq=COUNT_STATUS,
    )
    .returning(*SESSIONS.c)
)


def _candidates(whose: ColumnElement[bool], room: int) -> Any:
    """Sessions `whose` turn could be taken: ready, with inputs waiting; the oldest first,
    up to `room` of them (the caller leaves out those it still runs)."""
    # Start from the few sessions with waiting inputs, not from every live one: the
    # state is tested through an expression, or SQLite walks every idle session by its
    # state index (thousands, each tested against the inputs) instead.
    state = SESSIONS.c.state.concat(literal_column("''"))
    ready = or_(
        state.in_((ACTIVE, IDLE)),
        and_(state == BUSY, SESSIONS.c.turn_expires_at < bindparam("now")),
    )
    waiting = select(INPUTS.c.session_id).where(INPUTS.c.status.in_(UNCONSUMED)).distinct()
    return (
        select(SESSIONS.c.id)
        .where(SESSIONS.c.id.in_(waiting), ready, whose)
        .order_by(SESSIONS.c.updated_at)
        .limit(room)
        .with_for_update(skip_locked=True)
    )


# Delegations (sessions with a parent) are run by their coordinator's turn, never taken
# from the queue; a running non-blocking spawn's session is taken like a thread's.
_SPAWNED = select(Spawn.child_id).where(Spawn.state == "running", Spawn.nonblocking)
# A paused repository starts no turn (a pause on every host, "*", matches any host):
# asked in the claim itself, so no query for the pauses has to come before each claim.
_PAUSES = cast(Table, RepoPause.__table__)
_NOT_PAUSED = ~exists().where(
    _PAUSES.c.repo == func.lower(SESSIONS.c.repo),
    or_(_PAUSES.c.host == SESSIONS.c.host, _PAUSES.c.host == ANY_HOST),
)
_QUEUED_TURNS = and_(or_(SESSIONS.c.parent_id.is_(None), SESSIONS.c.id.in_(_SPAWNED)), _NOT_PAUSED)


@functools.cache
def _queued(room: int, one: bool) -> Lean:
    """The claim's query for up to `room` candidates (one statement per LIMIT: the
    caller's count of running turns varies little); `one`: of session `sid` only."""
    return Lean(_candidates(SESSIONS.c.id == bindparam("sid") if one else _QUEUED_TURNS, room))


# A launch's own session, if the queue's rules let it be claimed (not a delegation, its
# repository not paused).
_FIRST_OF = Lean(_candidates(and_(SESSIONS.c.id == bindparam("sid"), _QUEUED_TURNS), 1))


_STATE = Lean(select(SESSIONS.c.state).where(SESSIONS.c.id == bindparam("sid")))
_QUEUED_COMMENT = Lean(
    select(INPUTS.c.id).where(
        INPUTS.c.session_id == bindparam("sid"), INPUTS.c.comment_id == bindparam("comment")
    )
)
_ADD_INPUT = insert(INPUTS).returning(INPUTS.c.id)
# What finishing a turn needs of the session before it moves it on.
_FINISH_INPUTS = Lean(
    select(SESSIONS.c.completed, SESSIONS.c.options).where(SESSIONS.c.id == bindparam("sid"))
)


@functools.cache
def _mark_inputs(status: str, size: int) -> Lean:
    """Hand `size` inputs (ids `id0`...) to a turn (TAKEN) or mark them used (CONSUMED,
    those not used already); one statement per size, as a Lean one takes no list."""
    ids = INPUTS.c.id.in_(numbered("id", size))
    where = (ids,) if status == TAKEN else (ids, INPUTS.c.status.in_(UNCONSUMED))
    return Lean(update(INPUTS).where(*where).values(status=status, turn=bindparam("turn")))


@functools.cache
def _settle_turn(names: tuple[str, ...]) -> Lean:
    """Settle a turn if `owner` still runs it (a close or a takeover since the turn began
    wins over the runner), setting the columns `names` (bot.db.bound_values); the row as it is
    now comes back (RETURNING), its status_seq counted for the status version the
    finish's `after` queues. Built once per set of columns: an ending turn sets one of
    four."""
    return Lean(
        update(SESSIONS)
        .where(
            SESSIONS.c.id == bindparam("sid"),
            SESSIONS.c.state == BUSY,
            SESSIONS.c.turn_owner == bindparam("owner"),
        )
        .values({**bound_values(names), "status_seq": COUNT_STATUS})
        .returning(*SESSIONS.c)
    )


_WAITING_INPUTS = Lean(
    select(INPUTS)
    .where(INPUTS.c.session_id == bindparam("sid"), INPUTS.c.status.in_(UNCONSUMED))
    .order_by(INPUTS.c.id)
)

# The agent's steps and summary (update_status), and its output (task_completed).
_PROGRESS = Lean(select(SESSIONS.c.progress).where(SESSIONS.c.id == bindparam("id")))
_SET_PROGRESS = Lean(
    update(SESSIONS)
    .where(SESSIONS.c.id == bindparam("sid"))
    .values(progress=bindparam("new_progress"), updated_at=bindparam("now"))
)
_SET_OUTPUT = Lean(
    update(SESSIONS)
    .where(SESSIONS.c.id == bindparam("sid"))
    .values(output=bindparam("new_output"), completed=True, updated_at=bindparam("now"))
)


class TurnLease(StoreBase):
    """Queued inputs and the turn lease: claim, renew, record while owned, finish."""

    # -------------------------------------------------------------------- inputs

    def add_input(
        self,
        session_id: str,
        *,
        kind: str,
        author: str,
        body: str,
        comment_id: str | None = None,
        url: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> int | None:
        """Queue an input for the session's next turn; None if the session is not live
        or this comment is already queued (a redelivered comment). `params`: runtimeParams
        for the turn that reads this input only (kept in the row: any process may run it)."""
        now = self.clock()
        with self.engine.begin() as conn:
            state = _STATE.scalar(conn, {"sid": session_id})
            if state is None or state not in LIVE_STATES:
                return None
            if comment_id is not None:
                seen = _QUEUED_COMMENT.first(conn, {"sid": session_id, "comment": comment_id})
                if seen is not None:
                    return None
            item = {
                "session_id": session_id,
                "kind": kind,
                "author": author,
                "body": body,
                "comment_id": comment_id,
                "url": url,
                "status": QUEUED,
                "created_at": now,
                "params": params or None,
            }
            input_id = int(conn.execute(_ADD_INPUT, item).scalar_one())
            data: dict[str, Any] = {
                "input": input_id,
                "kind": kind,
                "author": author,
                "body": body,
                "comment": comment_id,
                "url": url,
            }
            if params:
                data["runtimeParams"] = params
            INSERT_EVENT.count(conn, event_row(session_id, now, "input", data))
            return input_id

    def amend_input(self, comment_id: str, body: str, by: str) -> str | None:
        """An edited comment changes its queued input; returns the session id if it did."""
        return self._change_queued(
            comment_id, {"body": body}, "input_amended", {"body": body, "by": by}
        )

    def withdraw_input(self, comment_id: str, by: str) -> str | None:
        """A deleted comment takes its queued input back; returns the session id if it did."""
        return self._change_queued(comment_id, {"status": WITHDRAWN}, "input_withdrawn", {"by": by})

    def _change_queued(
        self, comment_id: str, values: dict[str, Any], kind: str, data: dict[str, Any]
    ) -> str | None:
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            item = session.execute(
                select(SessionInput).where(
                    SessionInput.comment_id == comment_id, SessionInput.status == QUEUED
                )
            ).scalar_one_or_none()
            if item is None:
                return None
            changed = session.execute(
                update(SessionInput)
                .where(SessionInput.id == item.id, SessionInput.status == QUEUED)
                .values(amended_at=now, **values)
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            self._record(
                session, item.session_id, kind, {"input": item.id, "comment": comment_id, **data}
            )
            return str(item.session_id)

    # --------------------------------------------------------------------- turns

    def claim_turn(
        self,
        owner: str,
        *,
        lease_seconds: float,
        session_id: str | None = None,
        held: Held | None = None,
        running: Sequence[str] = (),
        after: InTransaction | None = None,
    ) -> tuple[SessionInfo, list[InputInfo]] | None:
        """Take the oldest live session that has queued inputs and is not mid-turn (see
        `claim_turn_and_more`)."""
        claimed, _ = self.claim_turn_and_more(
            owner,
            lease_seconds=lease_seconds,
            session_id=session_id,
            held=held,
            running=running,
            after=after,
        )
        return claimed

    def claim_turn_and_more(
        self,
        owner: str,
        *,
        lease_seconds: float,
        session_id: str | None = None,
        held: Held | None = None,
        running: Sequence[str] = (),
        after: InTransaction | None = None,
    ) -> tuple[tuple[SessionInfo, list[InputInfo]] | None, bool]:
        """Take the oldest live session that has queued inputs and is not mid-turn; and
        whether others were seen waiting (a runner need not look again at once if not).

        A turn whose runner died (lease expired) is taken over and run again with the
        inputs it had not consumed. Delegations (sessions with a parent) are run by their
        coordinator's turn, never taken here, unless asked for by `session_id`; a running
        non-blocking spawn's session is taken like a thread's. Sessions of a `held`
        repository (paused, or over a daily limit) are left waiting. `running` names the
        sessions whose turn the caller still runs: a lapsed lease does not hand it them again.
        `after` runs in the transaction that takes one.
        """
        if held is not None and held.everything is not None and session_id is None:
            return None, False
        with self.engine.begin() as conn:
            return self.claim_in(
                conn,
                owner,
                lease_seconds=lease_seconds,
                session_id=session_id,
                held=held,
                running=running,
                after=after,
            )

    def claim_in(
        self,
        conn: Connection,
        owner: str,
        *,
        lease_seconds: float,
        session_id: str | None = None,
        held: Held | None = None,
        running: Sequence[str] = (),
        after: InTransaction | None = None,
        first_of: str | None = None,
    ) -> tuple[tuple[SessionInfo, list[InputInfo]] | None, bool]:
        """`claim_turn_and_more` in the caller's transaction. `first_of`: a launch takes
        its new session's first turn in its own transaction, if the queue's rules let any
        runner take it (pauses; the spending holds are the caller's to check)."""
        now = self.clock()
        # Up to 10 that the caller does not run already (left out here, not in SQL: the
        # statement then keeps one shape however many the caller runs).
        room = 10 + len(running)
        params: dict[str, Any] = {"now": now}
        if first_of is not None:
            found = _FIRST_OF.rows(conn, {**params, "sid": first_of})
        elif session_id is not None:
            found = _queued(room, True).rows(conn, {**params, "sid": session_id})
        elif held is not None and held.repos:
            query = _candidates(and_(_QUEUED_TURNS, not_(_in_repos(held))), room)
            found = list(conn.execute(query, params))
        else:
            found = _queued(room, False).rows(conn, params)
        candidates = [r.id for r in found if r.id not in running][:10]
        for n, sid in enumerate(candidates):
            before = _LIMIT_INPUTS.first(conn, {"sid": sid})
            row = _TAKE_TURN.first(
                conn,
                {
                    "sid": sid,
                    "now": now,
                    "owner": owner,
                    "expires": now + timedelta(seconds=lease_seconds),
                    "limit": _working_time_limit(before, now),
                },
            )
            if row is None:
                continue
            taken = _same_params(_WAITING_INPUTS.rows(conn, {"sid": sid}))
            # Handed to this turn: an edit or deletion can no longer change them.
            ids = [i.id for i in taken]
            if ids:
                _mark_inputs(TAKEN, len(ids)).count(
                    conn, {"turn": row.turns, **numbered_params("id", ids)}
                )
            started = {"turn": row.turns, "inputs": [i.id for i in taken], "runner": owner}
            INSERT_EVENT.count(conn, event_row(sid, now, "turn_started", started))
            info = _info(row)
            if after is not None:
                after(conn, info)
            return (info, [_input(i) for i in taken]), n + 1 < len(candidates)
        return None, False

    def record_if_turn_owned(
        self, session_id: str, owner: str, kind: str, data: dict[str, Any]
    ) -> bool:
        """Record an event of a running turn, if `owner` still runs it (the session was
        not closed or taken over meanwhile); one transaction for both."""
        row = event_row(session_id, self.clock(), kind, data)
        with self.engine.begin() as conn:
            if not self.turn_owned_in(conn, session_id, owner):
                return False
            INSERT_EVENT.count(conn, row)
            return True

    def turn_owned_in(self, conn: Connection, session_id: str, owner: str) -> bool:
        """Whether `owner` still runs the session's turn, asked in the caller's transaction
        (what it writes next commits only while that holds)."""
        return _OWNED.first(conn, {"id": session_id, "owner": owner}) is not None

    def add_usage(
        self,
        session_id: str,
        input_tokens: int,
        output_tokens: int,
        *,
        cache_read: int = 0,
        cache_write: int = 0,
        cost_micros: int = 0,
    ) -> tuple[int, int, int]:
        """Count one model call's tokens (`input_tokens` all of them, cache reads and
        writes among them) and cost, for the session and for its repository's UTC day;
        the session's totals (input, output, cost) after it."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(
                    tokens_in=SessionRow.tokens_in + input_tokens,
                    tokens_out=SessionRow.tokens_out + output_tokens,
                    cache_read_tokens=SessionRow.cache_read_tokens + cache_read,
                    cache_write_tokens=SessionRow.cache_write_tokens + cache_write,
                    cost_micros=SessionRow.cost_micros + cost_micros,
                )
                .execution_options(synchronize_session=False)
            )
            found = session.execute(
                select(
                    SessionRow.tokens_in,
                    SessionRow.tokens_out,
                    SessionRow.cost_micros,
                    SessionRow.host,
                    SessionRow.repo,
                ).where(SessionRow.id == session_id)
            ).one()
            # The repository's day counts it too (daily spending limits), in this transaction.
            day = day_of(self.clock())
            used = input_tokens + output_tokens
            count_usage(session, day, found[3], found[4], used, cost_micros)
            return int(found[0]), int(found[1]), int(found[2])

    def take_delegation(self, session_id: str, most: int) -> int | None:
        """Count one more delegation if fewer than `most` were made; its number (1, 2, ...)
        or None at the limit. A conditional UPDATE, so concurrent calls cannot pass it."""
        with Session(self.engine) as session, session.begin():
            won = session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.delegations < most)
                .values(delegations=SessionRow.delegations + 1)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return int(
                session.execute(
                    select(SessionRow.delegations).where(SessionRow.id == session_id)
                ).scalar_one()
            )

    def renew_turn(self, session_id: str, owner: str, lease_seconds: float) -> bool:
        return self._owned_update(
            session_id, owner, turn_expires_at=self.clock() + timedelta(seconds=lease_seconds)
        )

    def finish_turn(
        self,
        session_id: str,
        owner: str,
        *,
        consumed: Iterable[int],
        turn: int,
        completed: bool,
        close_reason: str | None = None,
        failed: bool = False,
        error: str | None = None,
        awaiting: bool = False,
        closed_by: str | None = None,
        after: InTransaction | None = None,
    ) -> SessionInfo | None:
        """End the turn: mark its inputs consumed and move to idle, closed or failed
        (`closed_by`: who closed it, with a `close_reason`); `after` runs in the same
        transaction when the turn was still this runner's.

        Returns the session as it is now, or None if this runner no longer owned the turn
        (the session was closed meanwhile, or another runner took it over).
        """
        now = self.clock()
        with self.engine.begin() as conn:
            row = _FINISH_INPUTS.first(conn, {"sid": session_id})
            if row is None:
                return None
            values: dict[str, Any] = {
                "turn_owner": None,
                "turn_expires_at": None,
                "cancel_requested_at": None,
                "cancel_requested_by": None,
                "updated_at": now,
                "completed": bool(row.completed) or completed,
            }
            if failed:
                values.update(state=FAILED, close_reason=FAILURE, closed_at=now)
                event: tuple[str, dict[str, Any]] = ("failed", {"turn": turn, "error": error})
            elif close_reason is not None:
                values.update(
                    state=CLOSED, close_reason=close_reason, closed_at=now, closed_by=closed_by
                )
                event = ("closed", {"reason": close_reason, "turn": turn})
                if closed_by is not None:
                    event[1]["by"] = closed_by
            elif awaiting:  # a gate is open: wait for the decision, not for comments
                values.update(state=AWAITING, idle_deadline_at=None)
                event = ("turn_finished", {"turn": turn, "state": AWAITING})
            else:
                idle = _options(dict(row.options)).idle_expiry_minutes
                values.update(state=IDLE, idle_deadline_at=now + timedelta(minutes=idle))
                event = ("turn_finished", {"turn": turn, "state": IDLE})
            # Conditional: a close or a takeover since the turn began wins over this runner.
            fresh = _settle_turn(tuple(sorted(values))).first(
                conn, {"sid": session_id, "owner": owner, **bound_params(values)}
            )
            if fresh is None:
                return None
            ids = list(consumed)
            if ids:
                _mark_inputs(CONSUMED, len(ids)).count(
                    conn, {"turn": turn, **numbered_params("id", ids)}
                )
            INSERT_EVENT.count(conn, event_row(session_id, now, *event))
            info = _info(fresh)
            if after is not None:
                after(conn, info)
            return info

    def save_progress(self, session_id: str, progress: dict[str, Any]) -> None:
        """Replace the agent's steps and summary (a noted problem stays)."""
        self._merge_progress(session_id, progress, keep=("problem",))

    def note_problem(self, session_id: str, text: str) -> None:
        """Remember what went wrong (a failed write, a failed turn), so every later status
        comment still says so."""
        self._merge_progress(session_id, {"problem": text}, keep=("steps", "summary"))

    def _merge_progress(
        self, session_id: str, values: dict[str, Any], *, keep: tuple[str, ...]
    ) -> None:
        with self.engine.begin() as conn:
            progress = _PROGRESS.scalar(conn, {"id": session_id})
            if progress is None:
                return
            kept = {k: v for k, v in progress.items() if k in keep}
            _SET_PROGRESS.count(
                conn, {"sid": session_id, "new_progress": {**kept, **values}, "now": self.clock()}
            )

    def save_output(self, session_id: str, output: str) -> None:
        _SET_OUTPUT.alone(
            self.engine, {"sid": session_id, "new_output": output, "now": self.clock()}
        )


def _same_params(inputs: Sequence[Any]) -> Sequence[Any]:
    """The oldest inputs that share the first one's runtimeParams: inputs asking for
    other params (or none, after some) wait for a turn of their own, so each prompt's
    params reach its own turn's model calls and no other's."""
    if not inputs:
        return inputs
    first = inputs[0].params or None
    count = 1
    while count < len(inputs) and (inputs[count].params or None) == first:
        count += 1
    return inputs[:count]


def _working_time_limit(row: Any, now: datetime) -> datetime | None:
    """The time limit counts working time: a session taken up after waiting for comments
    has its limit moved on by the time it waited (since its last turn ended)."""
    limit: datetime | None = row.time_limit_at
    if row.state != IDLE or row.idle_deadline_at is None or limit is None:
        return limit
    idle = timedelta(minutes=_options(dict(row.options)).idle_expiry_minutes)
    waited = max(now - (row.idle_deadline_at - idle), timedelta(0))
    result: datetime = limit + waited
    return result


def _in_repos(held: Held) -> ColumnElement[bool]:
    """A session of one of the held repositories (a pause on every host matches any)."""
    named = []
    for host, repo in held.repos:
        same = func.lower(SessionRow.repo) == repo
        named.append(same if host == ANY_HOST else and_(SessionRow.host == host, same))
    return or_(*named)
