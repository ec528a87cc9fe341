"""What an event means: one pure decision from what is known to the actions to take.

Comments, reviews and issue triggers all come here (and, later, the HTTP API): from the
normalized event, the thread's live session, the author's permission and the
configuration, `decide` returns the actions the caller carries out, in order. It does
no I/O. A fact that costs a query or a host call (the live session, the session waiting
on an approval, the author's permission, the repository's own configuration) is asked
for only when the decision depends on it: `decide` then returns an `Ask`, the caller
fills that fact in (`Facts.knowing`) and decides again. So a comment that asks nothing
of the bot costs no permission check, as before.

Actions are taken on behalf of the event's author (`Facts.event.actor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Literal

from bot import commands
from bot.events import CommentEvent, Event, IssueEvent, ReviewEvent, ThreadRef, drop_reason
from bot.sessions.store import AWAITING, RESUMABLE, SessionInfo

if TYPE_CHECKING:
    from bot.agents.base import AgentSpec
    from bot.agents.config import Config, SessionPolicy, Triggers
    from bot.repo_configs import RepoAnswer
    from bot.sessions.limits import Hold


class Missing(Enum):
    """A fact not looked up yet."""

    MISSING = "missing"


MISSING: Final = Missing.MISSING

Fact = Literal["live", "awaiting", "writer", "repo", "last", "hold"]

# Why nothing is done (Ignore.reason); the notable ones are logged at info.
NOTHING_ASKED: Final = "asks nothing of the bot"
TRIGGERS_OFF: Final = "mentions are turned off by the repository's configuration file"
REPO_TRIGGERS_OFF: Final = "the repository's configuration turned this trigger off"
NOT_A_TRIGGER: Final = "not a trigger"
NO_GATE_WAITING: Final = "no session is waiting for an approval"
NOT_AN_ANSWER: Final = "a review that neither approves nor requests changes"
NOT_HANDLED: Final = "not an event the decision handles"

# Replies decided here (keyed once per person per session, so they never become spam).
OUTSIDER_IN_SESSION: Final = (
    "Sorry @{login}, only people with write access to this repository can steer "
    "Threadline sessions; session `{id}` here does not read your comments."
)
ALREADY_LIVE: Final = (
    "Session `{id}` (agent `{agent}`) is already live in this thread, so `/agent` starts "
    "nothing and is not passed to it. End it with `/done` or `/cancel`, then ask again."
)


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Facts:
    """Everything the decision may use. `MISSING` fields are looked up on request.

    `request_id` names the request for idempotency: the host and delivery id for a
    webhook (`github:<delivery>`), a client request id for the API. `delivery_id` is the
    bare delivery id (a review without an id is keyed by it).
    """

    event: Event
    config: Config  # the server's configuration
    bot_names: tuple[str, ...]
    request_id: str
    delivery_id: str = ""
    parsed: commands.Parsed = field(default_factory=commands.Parsed)
    live: SessionInfo | Missing | None = MISSING  # the thread's live session
    awaiting: SessionInfo | Missing | None = MISSING  # the session waiting on an approval
    writer: bool | Missing = MISSING  # whether the author has write access
    repo: RepoAnswer | Missing = MISSING  # the configuration in force in the repository
    # The thread's last session: a mention resumes it when the clock ended it.
    last: SessionInfo | Missing | None = MISSING
    # Why new work in the repository waits (paused, a daily limit spent), or None.
    hold: Hold | Missing | None = MISSING

    @classmethod
    def read(
        cls,
        event: Event,
        *,
        config: Config,
        bot_names: tuple[str, ...],
        request_id: str,
        delivery_id: str = "",
    ) -> Facts:
        """The facts known without any lookup: the event and what its text says."""
        parsed = commands.Parsed()
        if isinstance(event, CommentEvent) and event.action == "created":
            parsed = commands.parse(
                event.body,
                bot_names=bot_names,
                agent_ids=tuple(config.agents),
                user_signals=config.sessions.exit_criteria.explicit_signals,
                max_extend_minutes=int(config.sessions.max_extend_minutes),
            )
        elif isinstance(event, IssueEvent) and event.action == "opened":
            parsed = commands.parse(event.body, bot_names=bot_names)
        return cls(
            event=event,
            config=config,
            bot_names=bot_names,
            request_id=request_id,
            delivery_id=delivery_id,
            parsed=parsed,
        )

    def knowing(self, fact: Fact, value: Any) -> Facts:
        """These facts with `fact` filled in."""
        return replace(self, **{fact: value})


@dataclass(frozen=True)
class Ask:
    """The decision needs `fact` first (for `thread`, where it names one)."""

    fact: Fact
    thread: ThreadRef | None = None


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Ignore:
    """Do nothing; `notable` ones are worth a log line."""

    reason: str
    notable: bool = False


@dataclass(frozen=True)
class Record:
    """Write `kind` with `data` into the session's transcript (and nothing else)."""

    session: SessionInfo
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class RefuseOnce:
    """One short reply to an author without write access (per request); `command` is the
    refused command, None for a refused trigger."""

    command: str | None = None


@dataclass(frozen=True)
class ReportConfigProblems:
    """Say in the thread why the repository's newer configuration file was not used."""

    path: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class UnknownAgent:
    """Answer that the named agent (None: the default one) is not configured here."""

    agent_id: str | None
    known: tuple[str, ...]


@dataclass(frozen=True)
class Start:
    """Launch a session in the event's thread (idempotent by the request id)."""

    task: str
    agent_id: str | None
    agent: AgentSpec
    policy: SessionPolicy  # the repository's session settings, frozen into the session
    comment_id: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Resume:
    """Launch `start`, a session that takes up `session` (ended by idle expiry, lifetime
    or time limit): its conversation, checklist and spent tokens carry over."""

    session: SessionInfo
    start: Start


@dataclass(frozen=True)
class Held:
    """Say once in the thread (per hold) why nothing starts or runs here now."""

    hold: Hold


@dataclass(frozen=True)
class Feed:
    """Give the comment to the session as its next input."""

    session: SessionInfo
    body: str
    comment_id: str | None
    url: str | None
    kind: str = "comment"


@dataclass(frozen=True)
class Reply:
    """A reply in the session's thread (keyed once per `key`)."""

    session: SessionInfo
    key: str
    text: str


CommandRun = Literal["done", "cancel", "status", "extend"]


@dataclass(frozen=True)
class RunCommand:
    """Carry out a command on the session: `done` (also for a user signal, named in
    `argument`), `cancel`, `status` (reply keyed `key`), `extend` (`argument` minutes)."""

    session: SessionInfo
    name: CommandRun
    argument: str = ""
    key: str = ""


@dataclass(frozen=True)
class AnswerGate:
    """Approve or send back what the session waits on (the runtime checks the gate)."""

    session: SessionInfo
    approve: bool
    text: str
    how: Literal["comment", "review"]
    key: str
    sha: str | None = None


@dataclass(frozen=True)
class AnswerHelp:
    """Reply with the list of commands."""


@dataclass(frozen=True)
class NothingToApprove:
    """Say that no session in this thread waits for an approval (to a maintainer who
    answered one)."""


@dataclass(frozen=True)
class Amend:
    """An edited comment still queued as input changes with it."""

    comment_id: str
    body: str


@dataclass(frozen=True)
class Withdraw:
    """A deleted comment still queued as input is taken back."""

    comment_id: str


Action = (
    Ignore
    | Record
    | RefuseOnce
    | ReportConfigProblems
    | UnknownAgent
    | Start
    | Resume
    | Held
    | Feed
    | Reply
    | RunCommand
    | AnswerGate
    | AnswerHelp
    | NothingToApprove
    | Amend
    | Withdraw
)
Decision = Ask | list[Action]


# -------------------------------------------------------------------------- deciding


def decide(facts: Facts) -> Decision:
    """The actions `facts.event` asks for, or the fact still needed to say."""
    event = facts.event
    dropped = drop_reason(event, facts.bot_names)
    if dropped is not None:
        return [Ignore(dropped)]
    if isinstance(event, CommentEvent):
        return _comment(facts, event)
    if isinstance(event, ReviewEvent):
        return _review(facts, event)
    if isinstance(event, IssueEvent):
        return _issue(facts, event)
    return [Ignore(NOT_HANDLED)]


def task_of(event: CommentEvent, parsed: commands.Parsed) -> tuple[str, str | None]:
    """A comment's task and the agent it names (None: the default agent)."""
    if parsed.mention is not None:
        return parsed.mention.task or event.body.strip(), None
    if parsed.agent is not None:
        return parsed.agent.task or event.body.strip(), parsed.agent.agent_id
    return event.body.strip(), None


def wants_session(event: IssueEvent, triggers: Triggers, bot_names: tuple[str, ...]) -> bool:
    """Whether an issue event is a trigger: the configured label, an assignment to the
    bot, or an issue opened with a mention of it."""
    names = {n.lower() for n in bot_names}
    if event.action == "labeled":
        return triggers.label is not None and (event.label or "").lower() == triggers.label.lower()
    if event.action == "assigned":
        who = (event.assignee or "").lower().removesuffix("[bot]")
        return triggers.assignment and who in names
    if event.action == "opened" and triggers.mention:
        return commands.parse(event.body, bot_names=bot_names).mention is not None
    return False


def _comment(facts: Facts, event: CommentEvent) -> Decision:
    if event.action == "edited":
        return [Amend(event.comment_id, event.body)]
    if event.action == "deleted":
        return [Withdraw(event.comment_id)]
    if event.action != "created":
        return [Ignore(NOT_HANDLED)]
    parsed = facts.parsed
    if facts.live is MISSING:
        return Ask("live", event.thread)
    target = facts.live
    if any(c.name in ("approve", "request-changes") for c in parsed.commands) and (
        target is None or target.state != AWAITING
    ):
        # An answer in a pull request's conversation to a gate in one of its review threads.
        if facts.awaiting is MISSING:
            return Ask("awaiting", event.thread)
        target = facts.awaiting or target
    asks_task = facts.config.triggers.mention and (parsed.mention or parsed.agent) is not None
    if target is None:
        if asks_task:
            task, agent_id = task_of(event, parsed)
            return _start(facts, task, agent_id, event.comment_id, event.url, mention=True)
        if any(c.name == "help" for c in parsed.commands):
            return [AnswerHelp()]
        if any(c.name in ("approve", "request-changes") for c in parsed.commands):
            # Worth a word to a maintainer; an outsider's answer changes nothing either way.
            if facts.writer is MISSING:
                return Ask("writer")
            return [NothingToApprove()] if facts.writer else [Ignore(NO_GATE_WAITING)]
        return [Ignore(NOTHING_ASKED)]
    if parsed.commands or parsed.signal or parsed.problems:
        return _commands(facts, event, target)
    if asks_task and parsed.agent is not None:
        # `/agent X` asks for a new session, which a live one prevents: say so, feed nothing.
        if facts.writer is MISSING:
            return Ask("writer")
        if facts.writer:
            text = ALREADY_LIVE.format(id=target.id, agent=target.agent_id)
            return [Reply(target, f"already-live.{event.comment_id}", text)]
    if not target.options.listen_to_comments:
        data = {"by": event.actor.login, "why": "not listening", "comment": event.comment_id}
        return [Record(target, "input_ignored", data)]
    if not target.options.feed_outsider_comments:
        if facts.writer is MISSING:
            return Ask("writer")
        if not facts.writer:
            data = {
                "by": event.actor.login,
                "why": "no write access",
                "body": event.body,
                "comment": event.comment_id,
            }
            text = OUTSIDER_IN_SESSION.format(login=event.actor.login, id=target.id)
            key = f"outsider.{event.actor.login.lower()}"
            return [Record(target, "input_ignored", data), Reply(target, key, text)]
    body = task_of(event, parsed)[0] if asks_task else event.body
    if facts.hold is MISSING:
        return Ask("hold")
    fed: list[Action] = [Feed(target, body, event.comment_id, event.url)]
    return fed if facts.hold is None else [*fed, Held(facts.hold)]


def _commands(facts: Facts, event: CommentEvent, session: SessionInfo) -> Decision:
    """A comment's commands in order, checked against the author's permission; a user
    signal ends the session."""
    if facts.writer is MISSING:
        return Ask("writer")
    parsed, login = facts.parsed, event.actor.login
    names = [f"/{c.name}" for c in parsed.commands] or [parsed.signal or "(invalid)"]
    if not facts.writer:
        data = {"by": login, "commands": names, "why": "no write access"}
        return [Record(session, "command_refused", data), RefuseOnce(names[0])]
    actions: list[Action] = [
        Record(session, "commands", {"by": login, "commands": names, "signal": parsed.signal})
    ]
    if parsed.problems:
        actions.append(Reply(session, f"problems.{event.comment_id}", "\n".join(parsed.problems)))
    for command in parsed.commands:
        key = f"{command.name}.{event.comment_id}.{command.line}"
        name = command.name
        if name in ("done", "cancel"):
            actions.append(RunCommand(session, name))
            return actions
        if name in ("status", "extend"):
            actions.append(RunCommand(session, name, command.argument, key))
        elif name == "help":
            actions.append(AnswerHelp())
        else:  # approve, request-changes
            approve = name == "approve"
            actions.append(AnswerGate(session, approve, command.argument, "comment", key))
    if parsed.signal is not None:
        actions.append(RunCommand(session, "done", parsed.signal))
    return actions


def _review(facts: Facts, event: ReviewEvent) -> Decision:
    """A GitHub review (Approve / Request changes) or a GitLab approval answers the gate
    of the pull request's waiting session, when its author may write."""
    if event.action != "submitted":
        return [Ignore(NOT_HANDLED)]
    if event.state not in ("approved", "changes_requested"):
        return [Ignore(NOT_AN_ANSWER)]
    if facts.awaiting is MISSING:
        return Ask("awaiting", event.thread.conversation)
    waiting = facts.awaiting
    if waiting is None:
        return [Ignore(NO_GATE_WAITING)]
    if facts.writer is MISSING:
        return Ask("writer")
    if not facts.writer:
        data = {"by": event.actor.login, "why": "no write access", "how": "review"}
        return [Record(waiting, "approval_refused", data)]
    key = f"review.{event.review_id or facts.delivery_id}"
    approve = event.state == "approved"
    return [AnswerGate(waiting, approve, event.body, "review", key, sha=event.commit_id)]


def _issue(facts: Facts, event: IssueEvent) -> Decision:
    """An issue labeled, assigned to the bot or opened with a mention starts a session
    on it, with its title and text as the task."""
    if event.action not in ("opened", "labeled", "assigned"):
        return [Ignore(NOT_HANDLED)]
    if not wants_session(event, facts.config.triggers, facts.bot_names):
        return [Ignore(NOT_A_TRIGGER)]
    task = f"{event.title}\n\n{event.body}".strip()
    return _start(facts, task, None, None, event.url, mention=False)


def _start(
    facts: Facts,
    task: str,
    agent_id: str | None,
    comment_id: str | None,
    url: str | None,
    *,
    mention: bool,
) -> Decision:
    """Start a session, if the author may and the repository's configuration lets it;
    in a paused repository, or one past a daily limit, say once why not (asked first: it
    costs no host call)."""
    if facts.hold is MISSING:
        return Ask("hold")
    if facts.hold is not None:
        return [Held(facts.hold)]
    if facts.writer is MISSING:
        return Ask("writer")
    if not facts.writer:
        return [RefuseOnce()]
    if facts.repo is MISSING:
        return Ask("repo")
    repo = facts.repo
    actions: list[Action] = []
    if repo.problems:
        actions.append(ReportConfigProblems(repo.path, repo.problems))
    config = repo.config
    event = facts.event
    allowed = (
        config.triggers.mention
        if mention
        else isinstance(event, IssueEvent)
        and wants_session(event, config.triggers, facts.bot_names)
    )
    if not allowed:
        return [*actions, Ignore(TRIGGERS_OFF if mention else REPO_TRIGGERS_OFF, notable=True)]
    try:
        agent = config.agent(agent_id)
    except KeyError:
        return [*actions, UnknownAgent(agent_id, tuple(config.agents))]
    start = Start(task, agent_id, agent, config.sessions, comment_id, url)
    if not mention:
        return [*actions, start]
    if facts.last is MISSING:
        return Ask("last", event.thread if isinstance(event, CommentEvent) else None)
    resumed = _resumable(facts.last, agent_id, config)
    if resumed is None:
        return [*actions, start]
    earlier, agent = resumed
    return [*actions, Resume(earlier, replace(start, agent_id=earlier.agent_id, agent=agent))]


def _resumable(
    last: SessionInfo | None, agent_id: str | None, config: Config
) -> tuple[SessionInfo, AgentSpec] | None:
    """The thread's last session and its agent, when a mention takes it up again: the
    clock ended it (not `/done` or `/cancel`), and no other agent is asked for."""
    if last is None or last.live or last.close_reason not in RESUMABLE:
        return None
    if agent_id is not None and agent_id != last.agent_id:
        return None
    try:
        return last, config.agent(last.agent_id)
    except KeyError:  # its agent left the configuration: a new line of work
        return None
