"""The status comment: one per session, edited in place as the session moves (pure text)."""

from __future__ import annotations

from datetime import datetime

from bot.sessions.store import SessionInfo

REASONS = {
    "user_signal": "ended by {by}",
    "done": "done",
    "cancelled": "cancelled by {by}",
    "time_limit": "time limit reached",
    "idle_expiry": "closed after being idle too long",
    "lifetime": "maximum lifetime reached",
    "capacity": "not started: Threadline is running as many sessions as it may; try again later",
    "failure": "failed",
    "uninstalled": "closed: the app was uninstalled or suspended",
    "purged": "closed and purged by an operator",
    "operator": "closed by an operator",
}
STATES = {
    "active": "starting",
    "busy": "working",
    "idle": "waiting for comments",
    "closed": "closed",
    "failed": "failed",
}


def status_key(session_id: str) -> str:
    """The outbox name of a session's status comment (also its hidden marker)."""
    return f"status.{session_id}"


def elapsed(since: datetime, until: datetime) -> str:
    seconds = max(int((until - since).total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def close_text(session: SessionInfo) -> str:
    template = REASONS.get(session.close_reason or "", session.close_reason or "closed")
    who = f"@{session.closed_by}" if session.closed_by else "someone"
    return template.format(by=who)


def render(session: SessionInfo, now: datetime) -> str:
    """The status comment's Markdown for `session` as it is at `now`."""
    end = session.closed_at or now
    state = STATES.get(session.state, session.state)
    if not session.live:
        state = close_text(session)
    steps = session.progress.get("steps") or []
    done = sum(1 for s in steps if s.get("done"))
    head = (
        f"**Threadline** session `{session.id}` · agent `{session.agent_id}` · {state} · "
        f"{elapsed(session.created_at, end)}"
    )
    if steps:
        head += f" · {done}/{len(steps)} steps done"
    lines = [head, ""]
    lines += [f"- [{'x' if s.get('done') else ' '}] {s.get('title', '')}" for s in steps]
    summary = session.progress.get("summary")
    if summary:
        lines += ["", str(summary)]
    if session.output:
        lines += ["", "**Result**", "", session.output]
    problem = session.progress.get("problem")
    if problem:
        lines += ["", f"> {problem}"]
    if session.live:
        signals = ", ".join(f"`{s}`" for s in session.options.user_signals)
        lines += [
            "",
            f"<sub>Reply in this thread to talk to the session; {signals} ends it, "
            "`/cancel` stops it, `/help` lists the commands.</sub>",
        ]
    else:
        lines += ["", f"<sub>Transcript: `threadline sessions transcript {session.id}`</sub>"]
    return "\n".join(lines)
