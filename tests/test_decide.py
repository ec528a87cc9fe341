"""bot.decide: what a comment, review or issue event means, as a table of inputs and the
actions they must give, with the facts each case had to look up (and no others)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot import commands
from bot.agents.config import Config, parse_config
from bot.decide import (
    ALREADY_LIVE,
    NO_GATE_WAITING,
    NOT_A_TRIGGER,
    NOT_AN_ANSWER,
    NOT_HANDLED,
    NOTHING_ASKED,
    OUTSIDER_IN_SESSION,
    REPO_TRIGGERS_OFF,
    TRIGGERS_OFF,
    Action,
    Amend,
    AnswerGate,
    AnswerHelp,
    Ask,
    Fact,
    Facts,
    Feed,
    Held,
    Ignore,
    NothingToApprove,
    Record,
    RefuseOnce,
    Reply,
    ReportConfigProblems,
    Resume,
    RunCommand,
    Start,
    UnknownAgent,
    Withdraw,
    decide,
)
from bot.events import (
    Actor,
    CommentEvent,
    Event,
    InstallationEvent,
    IssueEvent,
    PullRequestEvent,
    ReviewEvent,
    ReviewThreadEvent,
    ThreadRef,
)
from bot.repo_configs import RepoAnswer
from bot.sessions.limits import Hold
from bot.sessions.store import SessionInfo, SessionOptions
from tests.test_sessions import GitHubRig, eventually, fake_github, rig

__all__ = ["fake_github", "rig"]

SERVER = parse_config(
    """
agents:
  helper:
    engine: script
    script:
      - do:
          - reply: "helper: {input}"
  reviewer:
    engine: script
    script:
      - do:
          - reply: "reviewer: {input}"
sessions:
  exitCriteria:
    userSignals:
      explicit: ["/done", "thanks"]
  maxExtendMinutes: 60
triggers:
  mention: true
  label: threadline
  assignment: true
"""
)
NO_MENTIONS = replace(SERVER, triggers=replace(SERVER.triggers, mention=False))
ONLY_HELPER = replace(SERVER, agents={"helper": SERVER.agents["helper"]})
NO_LABEL = replace(SERVER, triggers=replace(SERVER.triggers, label=None))
HELPER, REVIEWER = SERVER.agent("helper"), SERVER.agent("reviewer")

REPO = "octo-org/hello-world"
ISSUE = ThreadRef("github", REPO, "issue", 7)
PULL = ThreadRef("github", REPO, "pull", 9)
REVIEW_THREAD = ThreadRef("github", REPO, "pull", 9, "r55")
MAINTAINER, OUTSIDER, BOT = "maintainer", "outsider", "threadline"
URL = "https://example.test/c1"
DELIVERY = "d-1"


def session(
    thread: ThreadRef = ISSUE, state: str = "idle", sid: str = "s-00000001", **options: Any
) -> SessionInfo:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    return SessionInfo(
        id=sid,
        thread=thread,
        installation_id=1,
        agent_id="helper",
        state=state,
        close_reason=None,
        closed_by=None,
        task="a task",
        started_by=MAINTAINER,
        trigger_comment_id="c0",
        options=SessionOptions(**options),
        created_at=now,
        updated_at=now,
        closed_at=None,
        time_limit_at=now,
        idle_deadline_at=None,
        lifetime_at=now,
        extended_minutes=0,
        turns=1,
        completed=False,
        progress={},
        output=None,
        status_seq=1,
    )


LIVE = session()
EXPIRED = replace(session(state="closed"), close_reason="idle_expiry")
TIMED_OUT = replace(session(state="closed"), close_reason="time_limit")
OUTLIVED = replace(session(state="closed"), close_reason="lifetime")
FINISHED = replace(session(state="closed"), close_reason="user_signal")
CANCELLED_BEFORE = replace(session(state="closed"), close_reason="cancelled")
WAITING = session(state="awaiting_approval")
WAITING_IN_REVIEW = session(REVIEW_THREAD, "awaiting_approval", "s-00000002")
LIVE_ON_PULL = session(PULL, sid="s-00000003")
DEAF = session(listen_to_comments=False)
OPEN_TO_ALL = session(feed_outsider_comments=True)
PAUSED_HOLD = Hold("paused", "20261204120000", "Threadline is paused here.")
LIMIT_HOLD = Hold("repository", "2026-12-04", "The daily limit is spent.")


def comment(
    body: str,
    *,
    action: str = "created",
    by: str = MAINTAINER,
    thread: ThreadRef = ISSUE,
    is_bot: bool = False,
    system: bool = False,
    host: str = "github",
) -> CommentEvent:
    return CommentEvent(
        host=host,  # type: ignore[arg-type]
        repo=REPO,
        actor=Actor(by, is_bot=is_bot),
        action=action,
        installation_id=1,
        thread=replace(thread, host=host),  # type: ignore[arg-type]
        comment_id="c1",
        body=body,
        url=URL,
        system=system,
    )


def issue(
    action: str,
    *,
    by: str = MAINTAINER,
    label: str | None = None,
    assignee: str | None = None,
    body: str = "It fails on retry.",
) -> IssueEvent:
    return IssueEvent(
        host="github",
        repo=REPO,
        actor=Actor(by),
        action=action,
        installation_id=1,
        thread=ISSUE,
        title="Retry drops errors",
        body=body,
        label=label,
        assignee=assignee,
        url="https://example.test/issues/7",
    )


def review(
    state: str, *, by: str = MAINTAINER, review_id: str | None = "r1", action: str = "submitted"
) -> ReviewEvent:
    return ReviewEvent(
        host="github",
        repo=REPO,
        actor=Actor(by),
        action=action,
        installation_id=1,
        thread=PULL,
        review_id=review_id,
        state=state,
        body="looks right",
        commit_id="abc123",
    )


def repo(config: Config = SERVER, problems: tuple[str, ...] = ()) -> RepoAnswer:
    return RepoAnswer(config, ".github/threadline.yml", problems)


def start(task: str, agent_id: str | None = None, *, comment_id: str | None = "c1") -> Start:
    agent = SERVER.agent(agent_id)
    url = URL if comment_id else "https://example.test/issues/7"
    return Start(task, agent_id, agent, SERVER.sessions, comment_id, url)


def said(session: SessionInfo, *names: str, signal: str | None = None) -> Record:
    """The transcript note of a writer's commands."""
    return Record(
        session, "commands", {"by": MAINTAINER, "commands": list(names), "signal": signal}
    )


def refused(session: SessionInfo, *names: str) -> Record:
    data = {"by": OUTSIDER, "commands": list(names), "why": "no write access"}
    return Record(session, "command_refused", data)


def ignored_outsider(session: SessionInfo, body: str) -> list[Action]:
    """An outsider's comment noted, and the once-per-person refusal (keyed by login)."""
    data = {"by": OUTSIDER, "why": "no write access", "body": body, "comment": "c1"}
    text = OUTSIDER_IN_SESSION.format(login=OUTSIDER, id=session.id)
    return [Record(session, "input_ignored", data), Reply(session, f"outsider.{OUTSIDER}", text)]


@dataclass
class Case:
    name: str
    event: Event
    known: dict[Fact, Any] = field(default_factory=dict)  # what a lookup would answer
    asks: list[Fact] = field(default_factory=list)  # the lookups the decision makes, in order
    actions: list[Action] = field(default_factory=list)
    config: Config = SERVER


def settle(facts: Facts, known: dict[Fact, Any]) -> tuple[list[Fact], list[Action]]:
    """Decide, answering each fact asked for from `known` (a KeyError: an unexpected ask)."""
    asked: list[Fact] = []
    while True:
        decision = decide(facts)
        if not isinstance(decision, Ask):
            return asked, decision
        assert decision.fact not in asked, f"asked twice for {decision.fact}"
        if decision.fact == "hold" and "hold" not in known:
            # No hold (pause or spent limit) unless a case says so; the cases about holds
            # give one and list the ask.
            facts = facts.knowing("hold", None)
            continue
        asked.append(decision.fact)
        facts = facts.knowing(decision.fact, known[decision.fact])


def facts_for(case: Case) -> Facts:
    return Facts.read(
        case.event,
        config=case.config,
        bot_names=(BOT,),
        request_id=f"github:{DELIVERY}",
        delivery_id=DELIVERY,
    )


TOO_LONG = commands.PROBLEM_EXTEND_TOO_LONG.format(command="`/extend 90`", limit=60)
writer = {"writer": True}
outsider = {"writer": False}

CASES = [
    # ------------------------------------------------------------ starting (triggers)
    Case(
        "mention starts a session",
        comment("@threadline fix the retry"),
        {"live": None, **writer, "last": None, "repo": repo()},
        ["live", "writer", "repo", "last"],
        [start("fix the retry")],
    ),
    Case(
        "a bare mention's task is the comment",
        comment("@threadline"),
        {"live": None, **writer, "last": None, "repo": repo()},
        ["live", "writer", "repo", "last"],
        [start("@threadline")],
    ),
    Case(
        "/agent X task starts agent X",
        comment("/agent reviewer check the retry logic"),
        {"live": None, **writer, "last": None, "repo": repo()},
        ["live", "writer", "repo", "last"],
        [start("check the retry logic", "reviewer")],
    ),
    Case(
        "/agent with no known agent id gives the task to the default agent",
        comment("/agent tidy the tests"),
        {"live": None, **writer, "last": None, "repo": repo()},
        ["live", "writer", "repo", "last"],
        [start("tidy the tests")],
    ),
    Case(
        "a mention in a review thread starts that thread's session",
        comment("@threadline what about line 45?", thread=REVIEW_THREAD),
        {"live": None, **writer, "last": None, "repo": repo()},
        ["live", "writer", "repo", "last"],
        [start("what about line 45?")],
    ),
    Case(
        "a mention on GitLab",
        comment("@threadline fix it", host="gitlab"),
        {"live": None, **writer, "last": None, "repo": repo()},
        ["live", "writer", "repo", "last"],
        [start("fix it")],
    ),
    Case(
        "the repository's file with problems is answered, then the session starts",
        comment("@threadline fix it"),
        {"live": None, **writer, "last": None, "repo": repo(problems=("line 3: bad",))},
        ["live", "writer", "repo", "last"],
        [ReportConfigProblems(".github/threadline.yml", ("line 3: bad",)), start("fix it")],
    ),
    Case(
        "an agent the repository's file removed is answered as unknown",
        comment("/agent reviewer check it"),
        {"live": None, **writer, "last": None, "repo": repo(ONLY_HELPER)},
        ["live", "writer", "repo"],
        [UnknownAgent("reviewer", ("helper",))],
    ),
    Case(
        "mentions turned off by the repository's file",
        comment("@threadline fix it"),
        {"live": None, **writer, "last": None, "repo": repo(NO_MENTIONS)},
        ["live", "writer", "repo"],
        [Ignore(TRIGGERS_OFF, notable=True)],
    ),
    Case(
        "mentions turned off on the server: no lookup of permission",
        comment("@threadline fix it"),
        {"live": None},
        ["live"],
        [Ignore(NOTHING_ASKED)],
        config=NO_MENTIONS,
    ),
    Case(
        "issue labeled with the trigger label",
        issue("labeled", label="Threadline"),
        {**writer, "repo": repo()},
        ["writer", "repo"],
        [start("Retry drops errors\n\nIt fails on retry.", comment_id=None)],
    ),
    Case(
        "issue assigned to the bot",
        issue("assigned", assignee="threadline[bot]"),
        {**writer, "repo": repo()},
        ["writer", "repo"],
        [start("Retry drops errors\n\nIt fails on retry.", comment_id=None)],
    ),
    Case(
        "issue opened with a mention",
        issue("opened", body="@threadline please look"),
        {**writer, "repo": repo()},
        ["writer", "repo"],
        [start("Retry drops errors\n\n@threadline please look", comment_id=None)],
    ),
    Case(
        "issue label turned off by the repository's file",
        issue("labeled", label="threadline"),
        {**writer, "repo": repo(NO_LABEL)},
        ["writer", "repo"],
        [Ignore(REPO_TRIGGERS_OFF, notable=True)],
    ),
    # ------------------------------------------------------------------ resuming
    *[
        Case(
            f"a mention after a session ended by {earlier.close_reason} resumes it",
            comment("@threadline carry on"),
            {"live": None, **writer, "repo": repo(), "last": earlier},
            ["live", "writer", "repo", "last"],
            [Resume(earlier, start("carry on", "helper"))],
        )
        for earlier in (EXPIRED, TIMED_OUT, OUTLIVED)
    ],
    *[
        Case(
            f"a mention after a session ended by {earlier.close_reason} starts afresh",
            comment("@threadline carry on"),
            {"live": None, **writer, "repo": repo(), "last": earlier},
            ["live", "writer", "repo", "last"],
            [start("carry on")],
        )
        for earlier in (FINISHED, CANCELLED_BEFORE)
    ],
    Case(
        "/agent naming another agent after an expired session starts afresh",
        comment("/agent reviewer check it"),
        {"live": None, **writer, "repo": repo(), "last": EXPIRED},
        ["live", "writer", "repo", "last"],
        [start("check it", "reviewer")],
    ),
    Case(
        "/agent naming the expired session's agent resumes it",
        comment("/agent helper go on"),
        {"live": None, **writer, "repo": repo(), "last": EXPIRED},
        ["live", "writer", "repo", "last"],
        [Resume(EXPIRED, start("go on", "helper"))],
    ),
    Case(
        "an expired session whose agent the configuration dropped is not resumed",
        comment("@threadline carry on"),
        {
            "live": None,
            **writer,
            "repo": repo(ONLY_HELPER),
            "last": replace(EXPIRED, agent_id="gone"),
        },
        ["live", "writer", "repo", "last"],
        [start("carry on")],
    ),
    Case(
        "an outsider's mention after an expired session is refused, nothing resumed",
        comment("@threadline carry on", by=OUTSIDER),
        {"live": None, **outsider},
        ["live", "writer"],
        [RefuseOnce()],
    ),
    # ------------------------------------------------------------------ refusals
    Case(
        "an outsider's mention is refused once, nothing else is read",
        comment("@threadline fix it", by=OUTSIDER),
        {"live": None, **outsider},
        ["live", "writer"],
        [RefuseOnce()],
    ),
    Case(
        "an outsider's /agent is refused",
        comment("/agent reviewer go", by=OUTSIDER),
        {"live": None, **outsider},
        ["live", "writer"],
        [RefuseOnce()],
    ),
    Case(
        "an outsider's label is refused",
        issue("labeled", by=OUTSIDER, label="threadline"),
        outsider,
        ["writer"],
        [RefuseOnce()],
    ),
    Case(
        "an outsider's /done is refused and noted",
        comment("/done", by=OUTSIDER),
        {"live": LIVE, **outsider},
        ["live", "writer"],
        [refused(LIVE, "/done"), RefuseOnce("/done")],
    ),
    Case(
        "an outsider's user signal is refused and noted",
        comment("thanks", by=OUTSIDER),
        {"live": LIVE, **outsider},
        ["live", "writer"],
        [refused(LIVE, "thanks"), RefuseOnce("thanks")],
    ),
    Case(
        "an outsider's /approve is refused",
        comment("/approve", by=OUTSIDER),
        {"live": WAITING, **outsider},
        ["live", "writer"],
        [refused(WAITING, "/approve"), RefuseOnce("/approve")],
    ),
    Case(
        "an outsider's review does not answer the gate",
        review("approved", by=OUTSIDER),
        {"awaiting": WAITING_IN_REVIEW, **outsider},
        ["awaiting", "writer"],
        [
            Record(
                WAITING_IN_REVIEW,
                "approval_refused",
                {"by": OUTSIDER, "why": "no write access", "how": "review"},
            )
        ],
    ),
    Case(
        "an outsider in a listened thread is recorded, not fed",
        comment("I have an opinion", by=OUTSIDER),
        {"live": LIVE, **outsider},
        ["live", "writer"],
        ignored_outsider(LIVE, "I have an opinion"),
    ),
    Case(
        "an outsider's mention in a live session is refused (once per person, by its key)",
        comment("@threadline do it my way", by=OUTSIDER),
        {"live": LIVE, **outsider},
        ["live", "writer"],
        ignored_outsider(LIVE, "@threadline do it my way"),
    ),
    Case(
        "/agent X in a thread with a live session says which is live, feeds nothing",
        comment("/agent reviewer check the retry logic"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [Reply(LIVE, "already-live.c1", ALREADY_LIVE.format(id=LIVE.id, agent="helper"))],
    ),
    Case(
        "an outsider is fed where feedOutsiderComments is on, without a permission lookup",
        comment("I have an opinion", by=OUTSIDER),
        {"live": OPEN_TO_ALL},
        ["live"],
        [Feed(OPEN_TO_ALL, "I have an opinion", "c1", URL)],
    ),
    # ------------------------------------------------------------------ commands
    Case(
        "/done ends the session",
        comment("/done"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "/done", signal="/done"), RunCommand(LIVE, "done")],
    ),
    Case(
        "/cancel ends the session",
        comment("/cancel"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "/cancel"), RunCommand(LIVE, "cancel")],
    ),
    Case(
        "/status answers with the status line",
        comment("/status"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "/status"), RunCommand(LIVE, "status", "", "status.c1.1")],
    ),
    Case(
        "/extend N extends",
        comment("/EXTEND 015"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "/extend"), RunCommand(LIVE, "extend", "15", "extend.c1.1")],
    ),
    Case(
        "/extend past the limit is a problem, answered",
        comment("/extend 90"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "(invalid)"), Reply(LIVE, "problems.c1", TOO_LONG)],
    ),
    Case(
        "/extend without minutes is a problem, answered",
        comment("/extend"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "(invalid)"), Reply(LIVE, "problems.c1", commands.PROBLEM_EXTEND_MISSING)],
    ),
    Case(
        "/help in a live thread",
        comment("/help"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "/help"), AnswerHelp()],
    ),
    Case(
        "/help with no session: answered without a permission lookup",
        comment("/help"),
        {"live": None},
        ["live"],
        [AnswerHelp()],
    ),
    Case(
        "/approve with nothing waiting: a maintainer is told so",
        comment("/approve"),
        {"live": None, "awaiting": None, **writer},
        ["live", "awaiting", "writer"],
        [NothingToApprove()],
    ),
    Case(
        "an outsider's /approve with nothing waiting gets no answer",
        comment("/approve", by=OUTSIDER),
        {"live": None, "awaiting": None, **outsider},
        ["live", "awaiting", "writer"],
        [Ignore(NO_GATE_WAITING)],
    ),
    Case(
        "an outsider's /help with no session is answered too",
        comment("/help", by=OUTSIDER),
        {"live": None},
        ["live"],
        [AnswerHelp()],
    ),
    Case(
        "user signal phrase ends the session",
        comment("Thanks!"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "thanks", signal="thanks"), RunCommand(LIVE, "done", "thanks")],
    ),
    Case(
        "commands run in order, then the signal",
        comment("/status\n/extend 5\nthanks"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [
            said(LIVE, "/status", "/extend", signal="thanks"),
            RunCommand(LIVE, "status", "", "status.c1.1"),
            RunCommand(LIVE, "extend", "5", "extend.c1.2"),
            RunCommand(LIVE, "done", "thanks"),
        ],
    ),
    Case(
        "nothing runs after /done",
        comment("/done\n/status"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [said(LIVE, "/done", "/status", signal="/done"), RunCommand(LIVE, "done")],
    ),
    Case(
        "a mention in a live thread feeds its task",
        comment("@threadline also check the tests"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [Feed(LIVE, "also check the tests", "c1", URL)],
    ),
    Case(
        "a writer's comment in a listened thread is fed",
        comment("what about line 45?"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [Feed(LIVE, "what about line 45?", "c1", URL)],
    ),
    Case(
        "a session not listening notes the comment, no permission lookup",
        comment("what about line 45?"),
        {"live": DEAF},
        ["live"],
        [
            Record(
                DEAF, "input_ignored", {"by": MAINTAINER, "why": "not listening", "comment": "c1"}
            )
        ],
    ),
    # ------------------------------------------------------------------ approvals
    Case(
        "/approve answers the thread's gate",
        comment("/approve"),
        {"live": WAITING, **writer},
        ["live", "writer"],
        [said(WAITING, "/approve"), AnswerGate(WAITING, True, "", "comment", "approve.c1.1")],
    ),
    Case(
        "/approve with a note",
        comment("/approve ship it"),
        {"live": WAITING, **writer},
        ["live", "writer"],
        [
            said(WAITING, "/approve"),
            AnswerGate(WAITING, True, "ship it", "comment", "approve.c1.1"),
        ],
    ),
    Case(
        "/request-changes sends the proposal back",
        comment("/request-changes keep the old timeout"),
        {"live": WAITING, **writer},
        ["live", "writer"],
        [
            said(WAITING, "/request-changes"),
            AnswerGate(WAITING, False, "keep the old timeout", "comment", "request-changes.c1.1"),
        ],
    ),
    Case(
        "/request-changes without text is a problem",
        comment("/request-changes"),
        {"live": WAITING, **writer},
        ["live", "writer"],
        [
            said(WAITING, "(invalid)"),
            Reply(WAITING, "problems.c1", commands.PROBLEM_REQUEST_CHANGES_EMPTY),
        ],
    ),
    Case(
        "/approve in the pull request answers the gate of one of its review threads",
        comment("/approve", thread=PULL),
        {"live": None, "awaiting": WAITING_IN_REVIEW, **writer},
        ["live", "awaiting", "writer"],
        [
            said(WAITING_IN_REVIEW, "/approve"),
            AnswerGate(WAITING_IN_REVIEW, True, "", "comment", "approve.c1.1"),
        ],
    ),
    Case(
        "/approve with nothing waiting goes to the live session (which says so)",
        comment("/approve", thread=PULL),
        {"live": LIVE_ON_PULL, "awaiting": None, **writer},
        ["live", "awaiting", "writer"],
        [
            said(LIVE_ON_PULL, "/approve"),
            AnswerGate(LIVE_ON_PULL, True, "", "comment", "approve.c1.1"),
        ],
    ),
    Case(
        "a review that approves answers the waiting gate",
        review("approved"),
        {"awaiting": WAITING_IN_REVIEW, **writer},
        ["awaiting", "writer"],
        [AnswerGate(WAITING_IN_REVIEW, True, "looks right", "review", "review.r1", "abc123")],
    ),
    Case(
        "a review that requests changes",
        review("changes_requested", review_id=None),
        {"awaiting": WAITING_IN_REVIEW, **writer},
        ["awaiting", "writer"],
        [
            AnswerGate(
                WAITING_IN_REVIEW, False, "looks right", "review", f"review.{DELIVERY}", "abc123"
            )
        ],
    ),
    # ------------------------------------------------------------- doing nothing
    Case(
        "an ordinary comment with no session: one lookup, nothing done",
        comment("nice work"),
        {"live": None},
        ["live"],
        [Ignore(NOTHING_ASKED)],
    ),
    Case(
        "a quoted mention does nothing",
        comment("> @threadline fix it"),
        {"live": None},
        ["live"],
        [Ignore(NOTHING_ASKED)],
    ),
    Case(
        "a quoted /done is only input, it ends nothing",
        comment("> /done"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [Feed(LIVE, "> /done", "c1", URL)],
    ),
    Case(
        "a /done in a code block is only input",
        comment("```\n/done\n```"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [Feed(LIVE, "```\n/done\n```", "c1", URL)],
    ),
    Case(
        "an indented /cancel is code, only input",
        comment("    /cancel"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [Feed(LIVE, "    /cancel", "c1", URL)],
    ),
    Case(
        "a /done in an HTML comment is only input",
        comment("<!-- /done -->"),
        {"live": LIVE, **writer},
        ["live", "writer"],
        [Feed(LIVE, "<!-- /done -->", "c1", URL)],
    ),
    Case(
        "a quoted /approve answers no gate",
        comment("> /approve"),
        {"live": WAITING, **writer},
        ["live", "writer"],
        [Feed(WAITING, "> /approve", "c1", URL)],
    ),
    Case(
        "an edited comment only amends queued input: its /done runs nothing",
        comment("/done", action="edited"),
        actions=[Amend("c1", "/done")],
    ),
    Case(
        "an edited /approve answers nothing",
        comment("/approve", action="edited"),
        actions=[Amend("c1", "/approve")],
    ),
    Case(
        "a deleted comment only withdraws queued input",
        comment("@threadline fix it", action="deleted"),
        actions=[Withdraw("c1")],
    ),
    Case(
        "the bot's own comment",
        comment("@threadline fix it", by="threadline[bot]"),
        actions=[Ignore("written by the bot itself (threadline[bot])")],
    ),
    Case(
        "another bot's /approve",
        comment("/approve", by="ci-helper[bot]", is_bot=True),
        actions=[Ignore("written by a bot account (ci-helper[bot])")],
    ),
    Case(
        "a GitLab system note",
        comment("@threadline added 1 commit", system=True, host="gitlab"),
        actions=[Ignore("GitLab system note")],
    ),
    Case(
        "the bot's own review",
        review("approved", by="threadline"),
        actions=[Ignore("written by the bot itself (threadline)")],
    ),
    Case(
        "a review that only comments",
        review("commented"),
        actions=[Ignore(NOT_AN_ANSWER)],
    ),
    Case(
        "a dismissed review",
        review("approved", action="dismissed"),
        actions=[Ignore(NOT_HANDLED)],
    ),
    Case(
        "an approving review with no gate waiting: no permission lookup",
        review("approved"),
        {"awaiting": None},
        ["awaiting"],
        [Ignore(NO_GATE_WAITING)],
    ),
    Case(
        "issue labeled with another label",
        issue("labeled", label="bug"),
        actions=[Ignore(NOT_A_TRIGGER)],
    ),
    Case(
        "issue assigned to someone else",
        issue("assigned", assignee="maintainer"),
        actions=[Ignore(NOT_A_TRIGGER)],
    ),
    Case(
        "issue opened without a mention",
        issue("opened", body="threadline could look at this"),
        actions=[Ignore(NOT_A_TRIGGER)],
    ),
    Case(
        "issue opened with a quoted mention",
        issue("opened", body="> @threadline please look"),
        actions=[Ignore(NOT_A_TRIGGER)],
    ),
    Case("issue closed", issue("closed"), actions=[Ignore(NOT_HANDLED)]),
    Case(
        "unknown event: a pull request push",
        PullRequestEvent(
            host="github",
            repo=REPO,
            actor=Actor(MAINTAINER),
            action="synchronize",
            thread=PULL,
            title="t",
            body="@threadline fix it",
        ),
        actions=[Ignore(NOT_HANDLED)],
    ),
    Case(
        "unknown event: a review thread resolved",
        ReviewThreadEvent(
            host="github", repo=REPO, actor=Actor(MAINTAINER), action="resolved", thread=PULL
        ),
        actions=[Ignore(NOT_HANDLED)],
    ),
    Case(
        "unknown event: an installation",
        InstallationEvent(
            host="github", repo="", actor=Actor(MAINTAINER), action="created", account="octo-org"
        ),
        actions=[Ignore(NOT_HANDLED)],
    ),
    # ---------------------------------------------- holds: paused, a daily limit spent
    Case(
        "a mention in a paused repository is answered once and starts nothing, before any "
        "permission check",
        comment("@threadline fix it"),
        {"live": None, "hold": PAUSED_HOLD},
        ["live", "hold"],
        [Held(PAUSED_HOLD)],
    ),
    Case(
        "an outsider's mention in a repository over its daily limit gets the same answer",
        comment("@threadline fix it", by=OUTSIDER),
        {"live": None, "hold": LIMIT_HOLD},
        ["live", "hold"],
        [Held(LIMIT_HOLD)],
    ),
    Case(
        "a label trigger in a repository over its daily limit starts nothing",
        issue("labeled", label="threadline"),
        {"hold": LIMIT_HOLD},
        ["hold"],
        [Held(LIMIT_HOLD)],
    ),
    Case(
        "a comment to a live session of a held repository is queued, and the hold is told",
        comment("and the tests too"),
        {"live": LIVE, **writer, "hold": LIMIT_HOLD},
        ["live", "writer", "hold"],
        [Feed(LIVE, "and the tests too", "c1", URL), Held(LIMIT_HOLD)],
    ),
    Case(
        "commands still work in a held repository (no hold is asked for)",
        comment("/done"),
        {"live": LIVE, **writer, "hold": LIMIT_HOLD},
        ["live", "writer"],
        [said(LIVE, "/done", signal="/done"), RunCommand(LIVE, "done")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision_table(case: Case) -> None:
    asked, actions = settle(facts_for(case), case.known)
    assert (asked, actions) == (case.asks, case.actions)


def test_every_command_and_trigger_kind_is_in_the_table() -> None:
    """The table covers each command the parser knows and each way to start a session."""
    bodies = " ".join(c.event.body for c in CASES if isinstance(c.event, CommentEvent))
    for name in commands.COMMAND_NAMES:
        assert f"/{name}" in bodies.lower(), name
    kinds = {(type(c.event).__name__, c.event.action) for c in CASES if c.asks[-1:] == ["repo"]}
    assert {("CommentEvent", "created"), ("IssueEvent", "labeled")} <= kinds
    assert {("IssueEvent", "assigned"), ("IssueEvent", "opened")} <= kinds


def test_a_review_looks_for_the_gate_in_the_pull_request_s_conversation() -> None:
    event = replace(review("approved"), thread=REVIEW_THREAD)
    facts = Facts.read(event, config=SERVER, bot_names=(BOT,), request_id="github:d")
    assert decide(facts) == Ask("awaiting", PULL)


def test_a_comment_looks_in_its_own_thread() -> None:
    facts = facts_for(Case("", comment("/approve", thread=REVIEW_THREAD)))
    assert decide(facts) == Ask("live", REVIEW_THREAD)
    assert decide(facts.knowing("live", None)) == Ask("awaiting", REVIEW_THREAD)


def test_the_decision_is_the_same_however_often_it_is_asked() -> None:
    """Pure: the same facts give equal answers, and the facts are not changed."""
    facts = facts_for(CASES[0]).knowing("live", None).knowing("writer", True)
    facts = facts.knowing("repo", repo()).knowing("last", None).knowing("hold", None)
    assert decide(facts) == decide(facts) == [start("fix the retry")]
    assert facts.live is None


# ------------------------------------------------------ carried out by the handlers

PERMISSION = r".*/collaborators/[^/]+/permission"


async def test_a_comment_that_asks_nothing_costs_no_permission_lookup(rig: GitHubRig) -> None:
    """Through the webhook: the handler looks up only what the decision asks for."""
    await rig.comment(7, "nice work", author="outsider")
    await rig.comment(7, "/help", author="outsider")
    await eventually(lambda: "Threadline commands" in rig.replies(7)[-1], "the help answer")
    assert rig.gh.requests_to("GET", PERMISSION) == []
    assert rig.sessions() == []


async def test_an_outsider_s_trigger_is_refused_once_after_one_lookup(rig: GitHubRig) -> None:
    await rig.comment(7, "@threadline delete everything", author="outsider")
    await eventually(lambda: rig.replies(7), "the refusal")
    [reply] = rig.replies(7)
    assert reply.startswith("Sorry @outsider, only people with write access")
    assert len(rig.gh.requests_to("GET", PERMISSION)) == 1
    assert rig.sessions() == []
