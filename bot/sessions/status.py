"""The status comment: one per session, edited in place as the session moves (pure text)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.sessions.approvals import ChangeSetInfo, GateInfo
from bot.sessions.protected import KINDS, protected
from bot.sessions.store import SessionInfo

# A session ended by the clock: how to go on (a mention starts the next session).
TO_CONTINUE = "; mention the bot in this thread to pick up where it left off"
REASONS = {
    "user_signal": "ended by {by}",
    "done": "done",
    "cancelled": "cancelled by {by}",
    "time_limit": "time limit reached" + TO_CONTINUE,
    "idle_expiry": "closed after being idle too long" + TO_CONTINUE,
    "lifetime": "maximum lifetime reached" + TO_CONTINUE,
    "agent_removed": "closed: its agent was removed from the configuration",
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
    "awaiting_approval": "awaiting approval",
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


def dollars(micros: int) -> str:
    """A cost for people: US$ with four decimals (a model call costs fractions of a cent)."""
    return f"US$ {micros / 1_000_000:.4f}"


def close_text(session: SessionInfo) -> str:
    template = REASONS.get(session.close_reason or "", session.close_reason or "closed")
    who = f"@{session.closed_by}" if session.closed_by else "someone"
    return template.format(by=who)


DECISIONS = {
    "approved": "approved by @{by}",
    "changes_requested": "changes requested by @{by}",
    "stale": "stale: the pull request moved after it was proposed",
    "cancelled": "withdrawn",
}
CHANGE_RESULTS = {
    "applied": "opened [{where}]({url}) from branch `{branch}`",
    "conflict": "not applied: {error}",
    "failed": "not applied: {error}",
}
HOW_TO_ANSWER = (
    "A maintainer answers with `/approve` or `/request-changes <what to change>` in this "
    "thread{review}."
)


CHANGE_MARKS = {"new": " (new)", "deleted": " (deleted)", "binary": " (binary)"}
MODE_MARKS = {"100755": " (executable)", "120000": " (symbolic link)"}
PROTECTED_WARNING = (
    "> [!WARNING]\n"
    "> This change touches {what}: {paths}. The server's configuration allows the "
    "agent that proposed it to (`allowProtectedPaths`); check these files closely before "
    "approving."
)


def code(text: str) -> str:
    """`text` as a Markdown code span, whatever backticks it holds."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def change_lines(change: ChangeSetInfo) -> list[str]:
    """The files a waiting change set touches, with a diffstat, and a warning for any
    protected path (CI or Threadline's configuration) it touches."""
    stats = [item.stat for item in change.files]
    lines = [""]
    if all(stat is not None for stat in stats):
        added = sum(stat.added for stat in stats if stat is not None)
        removed = sum(stat.removed for stat in stats if stat is not None)
        lines.append(f"Files changed: {len(stats)} (+{added} -{removed})")
    else:
        lines.append(f"Files changed: {len(stats)}")
    lines.append("")
    for item in change.files:
        line = f"- {code(item.path)}"
        stat = item.stat
        if stat is not None:
            line += CHANGE_MARKS.get(stat.change, "")
            if stat.change != "binary":
                line += f" +{stat.added} -{stat.removed}"
        elif item.content is None:
            line += CHANGE_MARKS["deleted"]
        line += MODE_MARKS.get(item.mode or "", "")
        lines.append(line)
    flagged = protected(item.path for item in change.files)
    if flagged:
        what = " and ".join(KINDS[kind] for kind in sorted(set(flagged.values())))
        paths = ", ".join(code(path) for path in sorted(flagged))
        lines += ["", PROTECTED_WARNING.format(what=what, paths=paths)]
    return lines


def _gate_lines(
    session: SessionInfo, gates: Sequence[GateInfo], changes: Sequence[ChangeSetInfo]
) -> list[str]:
    by_id = {change.id: change for change in changes}
    lines: list[str] = []
    for gate in gates:
        pin = f" at `{gate.pinned_sha[:12]}`" if gate.pinned_sha else ""
        if gate.status == "waiting":
            review = (
                ", or with a review (Approve / Request changes) on the pull request"
                if session.thread.target == "pull"
                else ""
            )
            lines += ["", f"**Awaiting approval**: {gate.subject}{pin}"]
            waiting = by_id.get(gate.change_set_id or -1)
            if waiting is not None:
                lines += change_lines(waiting)
            lines += ["", HOW_TO_ANSWER.format(review=review)]
            continue
        decision = DECISIONS.get(gate.status, gate.status).format(by=gate.decided_by)
        at = f" on `{gate.decided_sha[:12]}`" if gate.decided_sha else ""
        line = f"- {gate.subject}: {decision}{at}"
        change = by_id.get(gate.change_set_id or -1)
        if change is not None and change.status in CHANGE_RESULTS:
            where = f"#{change.pull_number}" if change.pull_number else "the pull request"
            line += "; " + CHANGE_RESULTS[change.status].format(
                where=where, url=change.pull_url or "", branch=change.branch, error=change.error
            )
        lines.append(line)
    if lines and lines[0] != "":
        lines.insert(0, "")
    return lines


def inspector_path(session_id: str) -> str:
    return f"/inspect/sessions/{session_id}"


def transcript_footer(session: SessionInfo, public_url: str | None = None) -> str:
    """A link to the session's page in the inspector where one can be made: under the
    public URL, or on this server itself for the playground (its page is served there).
    Otherwise the command that prints the transcript."""
    path = inspector_path(session.id)
    if public_url:
        return f"<sub>[Transcript]({public_url.rstrip('/')}{path})</sub>"
    if session.thread.host == "local":
        return f"<sub>[Transcript]({path})</sub>"
    return f"<sub>Transcript: `threadline sessions transcript {session.id}`</sub>"


def render(
    session: SessionInfo,
    now: datetime,
    gates: Sequence[GateInfo] = (),
    changes: Sequence[ChangeSetInfo] = (),
    *,
    public_url: str | None = None,
    cost: bool = False,
) -> str:
    """The status comment's Markdown for `session` as it is at `now`, with its approval
    gates and what became of its change sets. `public_url` (THREADLINE_PUBLIC_URL) makes
    the closing footer a link to the inspector; `cost` (`status.showCost`) adds what the
    session's model calls cost so far (its line of work's, for a resumed session)."""
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
    if cost:
        head += f" · {dollars(session.cost_micros)}"
    lines = [head, ""]
    lines += [f"- [{'x' if s.get('done') else ' '}] {s.get('title', '')}" for s in steps]
    summary = session.progress.get("summary")
    if summary:
        lines += ["", str(summary)]
    if session.output:
        lines += ["", "**Result**", "", session.output]
    lines += _gate_lines(session, gates, changes)
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
        lines += ["", transcript_footer(session, public_url)]
    return "\n".join(lines)
