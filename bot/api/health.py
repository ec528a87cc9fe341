"""`GET /api/v1/health` (and MCP's `bridge_health`): the database, the session runtime,
each host and each model provider, each with its state.

- database: one `SELECT 1`.
- sessions: whether this process runs sessions (it has workers).
- hosts: from the outbox, which every process shares, so the answer is the
  installation's and not one process's. The newest settled write (sent or failed) and the
  writes waiting in retry tell the state: "failing" when the newest write that was
  either sent or met an error met an error (a write superseded by a newer edit keeps
  its error); "degraded" when that one was sent but others wait in retry; "ok"
  otherwise ("ok" too when nothing was ever written: nothing failed).
- providers: what this process saw of its own model calls (`bot.agents.providers.seen`):
  "unknown" until the first call. No probe calls: a health check costs no tokens.

`state` is "failing" (503) when the database is, since then nothing works; a failing
host or provider makes it "degraded" (200): the bot still takes webhooks and keeps them
for when the host or provider is back, so a load balancer should keep it in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select, text

from bot.agents.providers import seen
from bot.clock import iso
from bot.db.models import OutboxItem
from bot.outbox import FAILED, PENDING, SENDING, SENT

# Not yet sent: waiting for its turn, or being sent right now (a retry in flight).
WAITING = (PENDING, SENDING)


def _database(engine: Engine) -> dict[str, Any]:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure is the answer
        return {"state": "failing", "error": type(exc).__name__}
    return {"state": "ok"}


def _host(conn: Connection, host: str) -> dict[str, Any]:
    mine = OutboxItem.host == host
    # Newest first by id: each scan stops at its first match, which is recent.
    # The newest write that was sent or met an error says how the host answers now;
    # an edit that superseded an erring one keeps its error, so coalesced status
    # versions do not hide a failing host.
    answered = conn.execute(
        select(OutboxItem.status)
        .where(
            mine,
            or_(
                OutboxItem.status.in_((SENT, FAILED)),
                OutboxItem.last_error.is_not(None),
            ),
        )
        .order_by(OutboxItem.id.desc())
        .limit(1)
    ).scalar()
    last_sent = conn.execute(
        select(OutboxItem.sent_at)
        .where(mine, OutboxItem.status == SENT)
        .order_by(OutboxItem.id.desc())
        .limit(1)
    ).scalar()
    waiting, oldest, retrying = conn.execute(
        select(
            func.count(), func.min(OutboxItem.created_at), func.count(OutboxItem.last_error)
        ).where(mine, OutboxItem.status.in_(WAITING))
    ).one()
    if answered is not None and answered != SENT:
        state = "failing"
    elif retrying:
        state = "degraded"
    else:
        state = "ok"
    return {
        "state": state,
        "waiting": int(waiting),
        "retrying": int(retrying),
        "oldest_waiting_since": iso(oldest),
        "last_sent_at": iso(last_sent),
    }


def _overall(parts: Iterable[Mapping[str, Any]], database: Mapping[str, Any]) -> str:
    if database["state"] != "ok":
        return "failing"
    return "degraded" if any(p["state"] == "failing" for p in parts) else "ok"


async def report(
    engine: Engine, *, has_sessions: bool, hosts: Iterable[str], providers: Iterable[str]
) -> dict[str, Any]:
    """The health answer for the configured `hosts` (plus any with writes waiting) and
    `providers`."""
    database = await asyncio.to_thread(_database, engine)
    host_states: dict[str, dict[str, Any]] = {}
    if database["state"] == "ok":

        def read_hosts() -> dict[str, dict[str, Any]]:
            with engine.connect() as conn:
                waiting = conn.execute(
                    select(OutboxItem.host).where(OutboxItem.status.in_(WAITING)).distinct()
                ).scalars()
                names = sorted({*hosts, *waiting})
                return {name: _host(conn, name) for name in names}

        host_states = await asyncio.to_thread(read_hosts)
    provider_states = {name: seen.seen(name).summary() for name in sorted(set(providers))}
    return {
        "state": _overall([*host_states.values(), *provider_states.values()], database),
        "database": database,
        "sessions": {"state": "ok" if has_sessions else "absent"},
        "hosts": host_states,
        "providers": provider_states,
    }
