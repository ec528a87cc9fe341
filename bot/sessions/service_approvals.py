"""Approvals: deciding an open gate, applying approved change sets, stale proposals."""

from __future__ import annotations

import logging

from bot.events import ThreadRef
from bot.sessions.approvals import (
    APPLIED,
    APPROVED,
    AWAITING,
    CHANGES_REQUESTED,
    IDLE,
    REJECTED,
    STALE,
    GateInfo,
)
from bot.sessions.changes import apply_change_set
from bot.sessions.service_core import ServiceCore
from bot.sessions.store import (
    SessionInfo,
)

log = logging.getLogger(__name__)

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
PUSHED = "Approved by @{login}: pushed `{sha}` to #{number} ({url})."
NOT_APPLIED = "Approved by @{login}, but the change was not applied: {error}"


class ApprovalDecisions(ServiceCore):
    """The service's approval side: a person's decision on a gate, and a moved head."""

    async def awaiting_in(self, thread: ThreadRef) -> SessionInfo | None:
        """The session waiting on an approval for `thread`: its own, or (for a pull
        request's conversation) the one of a review thread of that pull request."""
        own = await self.live_for(thread)
        if own is not None and own.state == AWAITING:
            return own
        if thread.thread_id is None and thread.target == "pull":
            found = await self.calls(self.store.awaiting_under, thread.key)
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
        gate = await self.calls(self.approvals.waiting_gate, session.id)
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
        decided = await self.calls(
            self.approvals.decide, gate.id, status_, by=by, sha=pinned, text=text or None, how=how
        )
        if decided is None:  # another answer won the race
            return None
        if approve:
            outcome = await self._apply(session, decided, by)
        else:
            if decided.change_set_id is not None:
                await self.calls(
                    self.approvals.settle_change_set, decided.change_set_id, status=REJECTED
                )
            outcome = CHANGES_ASKED.format(login=by, text=text or "(no details given)")
        await self._resume(session, kind="approval" if approve else "review", by=by, body=outcome)
        return decided

    async def _apply(self, session: SessionInfo, gate: GateInfo, by: str) -> str:
        change = (
            None
            if gate.change_set_id is None
            else await self.calls(self.approvals.change_set, gate.change_set_id)
        )
        if change is None:
            return APPROVED_PLAIN.format(login=by)
        if self.host_for is None:
            return NOT_APPLIED.format(login=by, error="no host connection in this process")
        proposer = session
        if change.session_id != session.id:  # a delegation's change, taken over by the gate
            found = await self.calls(self.store.get, change.session_id)
            proposer = found or session
        earlier = await self.calls(self.approvals.last_applied, session.id)
        applied = await apply_change_set(
            self.host_for(session),
            change,
            session.thread,
            agent=proposer.agent_id,
            approver=by,
            template=self.branch_template,
            allow_protected=self._allowed_protected(proposer.agent_id),
            earlier=earlier,
        )
        await self.calls(
            self.approvals.settle_change_set,
            change.id,
            status=applied.status,
            branch=applied.branch,
            commit_sha=applied.commit_sha,
            pull_number=applied.pull_number,
            pull_url=applied.pull_url,
            error=applied.error,
        )
        if applied.status == APPLIED and applied.pushed:
            text = PUSHED.format(
                login=by,
                sha=(applied.commit_sha or "")[:12],
                number=applied.pull_number,
                url=applied.pull_url,
            )
        elif applied.status == APPLIED:
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
        decided = await self.calls(
            self.approvals.decide, gate.id, STALE, by=by, sha=head, text=None, how=how
        )
        if decided is None:
            return None
        if decided.change_set_id is not None:
            await self.calls(self.approvals.settle_change_set, decided.change_set_id, status=STALE)
        text = STALE_GATE.format(pinned=(gate.pinned_sha or "")[:12], head=head[:12])
        await self.reply(session, key, text)
        await self._resume(session, kind="review", by=by, body=text)
        return decided

    async def head_moved(self, pull: ThreadRef, head: str) -> None:
        """A pull request got a new head: gates asked on an older one go stale."""
        sessions = await self.calls(self.store.awaiting_under, pull.key, include_self=True)
        for session in sessions:
            gate = await self.calls(self.approvals.waiting_gate, session.id)
            if gate is not None and gate.pinned_sha not in (None, head):
                await self._stale(
                    session, gate, head, by="(push)", how="push", key=f"stale.{gate.id}"
                )

    async def _resume(self, session: SessionInfo, *, kind: str, by: str, body: str) -> None:
        await self.feed(session, kind=kind, author=by, body=body)
        await self.calls(self.approvals.set_state, session.id, IDLE, only_from=AWAITING)
        fresh = await self.calls(self.store.get, session.id)
        if fresh is not None:
            await self.publish_status(fresh)
        self.wake_runner()
