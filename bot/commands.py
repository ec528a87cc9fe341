"""What a comment asks of the bot: its commands, a mention with a task, a user signal.

Pure functions over the comment's text, no I/O. Only lines a reader sees as the
author's own words are recognized: quoted replies (`>`), fenced and indented code and
HTML comments (where the bot keeps its own markers) never trigger anything. Each rule
follows the GitHub Flavored Markdown spec, which GitLab's renderer also follows for
these blocks: https://github.github.com/gfm/

A command is a line starting (after at most 3 spaces) with `/word`, case-insensitive;
the word ends at whitespace or the end of the line, so `/donezo` is not `/done` and
unknown words (another bot's commands) are ignored. A mention is a line starting with
`@botname`; it and `/agent` carry a task that runs on over the following lines, up to
the next command or mention.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

CommandName = Literal[
    "done", "cancel", "stop", "status", "help", "extend", "approve", "request-changes"
]

COMMAND_NAMES: Final[tuple[CommandName, ...]] = (
    "done",
    "cancel",
    "stop",
    "status",
    "help",
    "extend",
    "approve",
    "request-changes",
)
AGENT_COMMAND: Final = "agent"

# --- What the bot tells the author (user-facing text lives here, not in the code).

PROBLEM_EXTEND_MISSING: Final = "`/extend` needs a number of minutes, like `/extend 15`."
PROBLEM_EXTEND_NOT_WHOLE: Final = (
    "{command}: the minutes must be a positive whole number, like `/extend 15`."
)
PROBLEM_EXTEND_TOO_LONG: Final = "{command}: at most {limit} minutes at a time."
PROBLEM_REQUEST_CHANGES_EMPTY: Final = (
    "`/request-changes` needs the changes you want, like `/request-changes keep the old timeout`."
)
PROBLEM_SECOND_TASK: Final = (
    "Only one task per comment: the task on line {line} was not started. "
    "Post it as a comment of its own."
)

WHO_WRITE_ACCESS: Final = "people with write access to the repository"

HELP_TITLE: Final = "#### Threadline commands"
HELP_INTRO: Final = (
    "Write each command at the start of its own line. Lines in quotes (`>`), "
    "code blocks and HTML comments are never read as commands."
)
HELP_TABLE_HEAD: Final = "| Command | What it does | Who may use it | Example |\n|---|---|---|---|"
HELP_SIGNALS: Final = "A line saying only {signals} also tells the agent you are done."
HELP_EXTEND_LIMIT: Final = " At most {limit} minutes at a time."


@dataclass(frozen=True)
class CommandDoc:
    """One row of the `/help` table; `{bot}` in a field is replaced by the bot's name."""

    usage: str
    summary: str
    example: str
    who: str = WHO_WRITE_ACCESS


HELP_ROWS: Final[tuple[CommandDoc, ...]] = (
    CommandDoc(
        "@{bot} <task>",
        "Give the agent a task. The lines below belong to the task, up to the next command.",
        "@{bot} add a test for the retry limit",
    ),
    CommandDoc(
        "/agent [agent-id] <task>",
        "Give a task to the named agent, or to the default agent when no agent id comes first.",
        "/agent reviewer check the retry logic",
    ),
    CommandDoc("/status", "Show the state of this thread's session.", "/status"),
    CommandDoc("/extend <minutes>", "Give the running session more time.{limit}", "/extend 15"),
    CommandDoc(
        "/stop",
        "Stop the agent's current turn (its model call and any running command); the "
        "session stays open for more comments.",
        "/stop",
    ),
    CommandDoc("/cancel", "End the session now, dropping what the agent is doing.", "/cancel"),
    CommandDoc("/done", "End the session in this thread.", "/done"),
    CommandDoc("/approve", "Approve what the agent proposes.", "/approve"),
    CommandDoc(
        "/request-changes <text>",
        "Send the agent's proposal back, saying what to change.",
        "/request-changes keep the old timeout",
    ),
    CommandDoc("/help", "Show this list.", "/help"),
)


# --- Results.


@dataclass(frozen=True)
class Command:
    """A valid command: `name` without the slash, lower case; `argument` is the rest of
    its line, stripped ("" when none; for `extend`, the minutes as ASCII digits without
    leading zeros); `line` is its 1-based line number in the body."""

    name: CommandName
    argument: str
    line: int


@dataclass(frozen=True)
class Mention:
    """`@bot <task>`: `bot_name` is the mentioned name as configured; `task` is the
    rest of the line and the lines below it, up to the next command or mention line,
    as written (quotes, code and HTML comments kept: context for the agent), trimmed."""

    bot_name: str
    task: str
    line: int


@dataclass(frozen=True)
class AgentCommand:
    """`/agent [agent-id] <task>`: `agent_id` as configured, None for the default agent;
    `task` as for a mention (may be "")."""

    agent_id: str | None
    task: str
    line: int


@dataclass(frozen=True)
class Parsed:
    """Everything one comment asks of the bot.

    At most one of `mention` and `agent` is set: the first task in the comment wins
    and later ones are reported in `problems`. `commands` are the valid commands in
    the order they appear. `signal` is the first configured user signal found, as
    configured. `problems` are messages for the author about commands that were
    recognized but cannot be carried out; those commands are not in `commands`.
    """

    mention: Mention | None = None
    agent: AgentCommand | None = None
    commands: tuple[Command, ...] = ()
    signal: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def asks_nothing(self) -> bool:
        """True when the comment holds nothing for the bot to act on or answer."""
        return self == Parsed()


# --- Markdown: which lines count. Spec sections cited beside each rule.

# GitHub and GitLab take \r\n, \r and \n as line ends; str.splitlines() would also
# split on form feeds and Unicode separators, which Markdown does not.
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
# https://github.github.com/gfm/#fenced-code-blocks: up to 3 spaces, 3+ ` or ~.
_FENCE_OPEN: Final = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_CLOSE: Final = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*$")
# https://github.github.com/gfm/#block-quotes (any indent: 4+ would be code anyway).
_QUOTE: Final = re.compile(r"^\s*>")
# https://github.github.com/gfm/#indented-code-blocks: a tab counts as 4 columns.
_INDENTED_CODE: Final = re.compile(r"^(?: {0,3}\t| {4})")
_BACKTICKS: Final = re.compile(r"`+")
_COMMENT_OPEN: Final = "<!--"
# A line whose first non-space character is "/" or "@" (the spaces stop at a line
# break, so a run of blank lines is scanned once, not once per line).
_MAY_START_SOMETHING: Final = re.compile(r"(?:^|[\r\n])[^\S\r\n]*[/@]")
_COMMENT_CLOSE: Final = "-->"

# --- What a counted line says.

_COMMAND_LINE: Final = re.compile(r"^ {0,3}/(?P<word>\S+)(?:\s+(?P<rest>.*))?$")
# GitHub logins are letters, digits and "-"; GitLab's also "_" and "." (never last).
# The name must end there: "@threadline-dev" and "@threadline.io" are other users.
_MENTION_LINE: Final = re.compile(
    r"^ {0,3}@(?P<name>[a-z0-9_.-]*[a-z0-9_-])(?:\[bot\])?"
    r"(?![a-z0-9_\[-]|\.[a-z0-9_-])(?P<rest>.*)$",
    re.IGNORECASE,
)
_MINUTES: Final = re.compile(r"[0-9]+")
# Without a configured limit, still a bound: int() stays cheap on hostile input.
_EXTEND_CEILING: Final = 999_999_999
_MENTION_SEPARATORS: Final = " \t,:;"
_QUOTED_ARGUMENT_MAX: Final = 40


def parse(
    body: str,
    *,
    bot_names: Sequence[str],
    agent_ids: Collection[str] = (),
    user_signals: Sequence[str] = ("/done",),
    max_extend_minutes: int | None = None,
) -> Parsed:
    """Read `body` and say what it asks of the bot.

    `bot_names` are the names a mention may use (with or without "@" and "[bot]");
    `agent_ids` the agents `/agent` may name; `user_signals` are "/word" signals,
    matched like commands, or plain phrases, matched by a whole line.
    A longer `/extend` than `max_extend_minutes` is a problem (None: no limit but a
    sanity ceiling of 999,999,999).
    """
    rules = _Rules.build(
        tuple(bot_names), tuple(agent_ids), tuple(user_signals), max_extend_minutes
    )
    if _says_nothing(body, rules):
        return Parsed()
    return _read_lines(body, rules)


def _says_nothing(body: str, rules: _Rules) -> bool:
    """True when no line of `body` can say anything to the bot, told without reading
    it line by line (most comments; their lines cost the worker more than the rest of
    a plain comment's handling, bench/README.md session 12). Every mention, command and
    "/word" signal starts its line after whitespace at most, and a plain signal phrase
    holds its first word; an HTML comment could hide what starts a line, so a body
    with one is read in full."""
    if _COMMENT_OPEN in body:
        return False
    if ("/" in body or "@" in body) and _MAY_START_SOMETHING.search(body):
        return False
    if rules.plain_signals:
        folded = body.casefold()
        return not any(phrase.split()[0] in folded for phrase, _ in rules.plain_signals)
    return True


def _read_lines(body: str, rules: _Rules) -> Parsed:
    lines = _LINE_BREAK.split(body)
    counted = _counted_lines(lines)
    found = _Found()
    index = 0
    while index < len(lines):
        text, line_number = counted[index], index + 1
        task = None if text is None else _task_start(text, line_number, rules)
        if text is not None and task is not None:
            end = _task_end(counted, index + 1, rules)
            # The task is raw text: what an HTML comment hid from recognition stays in it.
            first = task.task + lines[index][len(text) :]
            found.add_task(replace(task, task=_task_text(first, lines[index + 1 : end])))
            index = end
            continue
        if text is not None:
            found.add_line(text, line_number, rules)
        index += 1
    return found.result()


def help_text(
    bot_name: str, user_signals: Sequence[str] = (), max_extend_minutes: int | None = None
) -> str:
    """The `/help` answer in Markdown: every command with its usage, who may use it,
    and an example; then the user signals, if any."""
    bot = _plain_name(bot_name)
    limit = "" if max_extend_minutes is None else HELP_EXTEND_LIMIT.format(limit=max_extend_minutes)
    rows = [
        f"| {_code(doc.usage.format(bot=bot))} | {doc.summary.format(limit=limit)} "
        f"| {doc.who} | {_code(doc.example.format(bot=bot))} |"
        for doc in HELP_ROWS
    ]
    parts = [HELP_TITLE, HELP_INTRO, HELP_TABLE_HEAD + "\n" + "\n".join(rows)]
    if user_signals:
        parts.append(HELP_SIGNALS.format(signals=" or ".join(_code(s) for s in user_signals)))
    return "\n\n".join(parts) + "\n"


# --- Settings, normalized once per call.


@dataclass(frozen=True)
class _Rules:
    bot_names: dict[str, str]  # casefolded plain name -> as configured
    agent_ids: dict[str, str]  # casefolded -> as configured
    slash_signals: tuple[tuple[str, str], ...]  # (casefolded, as configured)
    plain_signals: tuple[tuple[str, str], ...]  # (normalized phrase, as configured)
    max_extend_minutes: int | None

    @classmethod
    @functools.lru_cache(maxsize=64)  # the same few settings, for every comment
    def build(
        cls,
        bot_names: tuple[str, ...],
        agent_ids: tuple[str, ...],
        user_signals: tuple[str, ...],
        max_extend_minutes: int | None,
    ) -> _Rules:
        signals = [s.strip() for s in user_signals if s.strip()]
        return cls(
            bot_names={_plain_name(n).casefold(): n for n in bot_names},
            agent_ids={a.casefold(): a for a in agent_ids},
            slash_signals=tuple((s.casefold(), s) for s in signals if s.startswith("/")),
            plain_signals=tuple(
                (_phrase(s), s) for s in signals if not s.startswith("/") and _phrase(s)
            ),
            max_extend_minutes=max_extend_minutes,
        )


def _plain_name(name: str) -> str:
    return name.strip().removeprefix("@").removesuffix("[bot]")


# --- Which lines count.


def _counted_lines(lines: Sequence[str]) -> list[str | None]:
    """For each line, the text that may hold a command, or None when none can.

    None: quoted, inside a fenced code block or an HTML comment, a fence line, or
    indented code. A line that opens an HTML comment counts up to the comment only.
    """
    counted: list[str | None] = []
    fence: tuple[str, int] | None = None  # (character, length) of the open fence
    in_comment = False
    for line in lines:
        text: str | None = None
        if in_comment:
            in_comment = _comment_open_after(line, inside=True)
        elif fence is not None:
            fence = None if _closes_fence(line, fence) else fence
        elif _QUOTE.match(line) or _INDENTED_CODE.match(line):
            pass  # a fence or comment inside a quote ends with the quote
        elif (opened := _fence_opened(line)) is not None:
            fence = opened
        else:
            text, in_comment = _before_comment(line)
        counted.append(text)
    return counted


def _fence_opened(line: str) -> tuple[str, int] | None:
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    fence = match["fence"]
    # A backtick fence's info string may not hold a backtick (```a``` is inline code).
    if fence[0] == "`" and "`" in match["info"]:
        return None
    return fence[0], len(fence)


def _closes_fence(line: str, fence: tuple[str, int]) -> bool:
    """Closed by the same character, at least as many, nothing after but spaces."""
    match = _FENCE_CLOSE.match(line)
    return match is not None and match["fence"][0] == fence[0] and len(match["fence"]) >= fence[1]


def _before_comment(line: str) -> tuple[str, bool]:
    """The part of `line` before any HTML comment, and whether one is open at its end.

    Text after a comment on the same line does not count: `<!-- x --> /done` starts
    a raw HTML block, not a command (https://github.github.com/gfm/#html-blocks).
    """
    if _COMMENT_OPEN not in line:
        return line, False
    start = _mask_code_spans(line).find(_COMMENT_OPEN)
    if start < 0:
        return line, False
    rest = line[start + len(_COMMENT_OPEN) :]
    return line[:start], _comment_open_after(rest, inside=True)


def _comment_open_after(text: str, *, inside: bool) -> bool:
    """Whether an HTML comment is open at the end of `text`, given one open at its start."""
    if _COMMENT_OPEN not in text and _COMMENT_CLOSE not in text:
        return inside
    masked = _mask_code_spans(text)  # a comment's own text is raw: only openers use it
    position = 0
    while True:
        if inside:
            end = text.find(_COMMENT_CLOSE, position)
            if end < 0:
                return True
            position, inside = end + len(_COMMENT_CLOSE), False
        else:
            start = masked.find(_COMMENT_OPEN, position)
            if start < 0:
                return False
            position, inside = start + len(_COMMENT_OPEN), True


def _mask_code_spans(line: str) -> str:
    """`line` with the inside of each inline code span blanked, same length.

    A span opens with a run of backticks and closes at the next run of exactly the
    same length; a run with no partner is literal (https://github.github.com/gfm/#code-spans).
    """
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(line)]
    partner: list[int | None] = [None] * len(runs)
    last_of_length: dict[int, int] = {}
    for index in range(len(runs) - 1, -1, -1):  # next run of each length, in one pass
        length = runs[index][1] - runs[index][0]
        partner[index] = last_of_length.get(length)
        last_of_length[length] = index
    masked, copied, index = [], 0, 0
    while index < len(runs):
        close = partner[index]
        if close is None:
            index += 1
            continue
        opened_at, closed_at = runs[index][1], runs[close][0]
        masked += [line[copied:opened_at], " " * (closed_at - opened_at)]
        copied, index = closed_at, close + 1
    masked.append(line[copied:])
    return "".join(masked)


# --- What a counted line says.


def _task_start(text: str, number: int, rules: _Rules) -> Mention | AgentCommand | None:
    """A mention or `/agent` starting on this line, its task holding the line's rest
    (untrimmed, so the part of the line after `text` can follow it)."""
    mention = _MENTION_LINE.match(text)
    if mention is not None:
        name = rules.bot_names.get(mention["name"].casefold())
        if name is None:
            return None
        return Mention(name, mention["rest"].lstrip(_MENTION_SEPARATORS), number)
    command = _COMMAND_LINE.match(text)
    if command is None or command["word"].casefold() != AGENT_COMMAND:
        return None
    rest = command["rest"] or ""
    words = rest.split(None, 1)
    agent_id = rules.agent_ids.get(words[0].casefold()) if words else None
    if agent_id is None:
        return AgentCommand(None, rest, number)
    return AgentCommand(agent_id, words[1] if len(words) > 1 else "", number)


def _task_end(counted: Sequence[str | None], start: int, rules: _Rules) -> int:
    """Index of the first line at or after `start` that begins something new."""
    for index in range(start, len(counted)):
        text = counted[index]
        if text is not None and _starts_something(text, index + 1, rules):
            return index
    return len(counted)


def _starts_something(text: str, number: int, rules: _Rules) -> bool:
    """A command (valid or not), a mention, `/agent` or a "/word" signal."""
    return (
        _task_start(text, number, rules) is not None
        or _command(text, number, rules) is not None
        or _slash_signal(text, rules) is not None
    )


def _task_text(first: str, following: Sequence[str]) -> str:
    """The task: the trigger line's rest and the lines below, without blank ends."""
    lines = [first.strip(), *following]
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    end = next((i for i in range(len(lines), start, -1) if lines[i - 1].strip()), start)
    return "\n".join(lines[start:end])


def _command(text: str, number: int, rules: _Rules) -> Command | str | None:
    """The command on this line, a problem message when it is invalid, or None."""
    match = _COMMAND_LINE.match(text)
    if match is None:
        return None
    name = _COMMAND_BY_WORD.get(match["word"].casefold())
    if name is None:
        return None
    argument = (match["rest"] or "").strip()
    problem = _problem(name, argument, rules)
    if problem is not None:
        return problem
    if name == "extend":
        argument = argument.lstrip("0")  # "015" is 15; keeps int() within its digit limit
    return Command(name, argument, number)


_COMMAND_BY_WORD: Final[dict[str, CommandName]] = {name: name for name in COMMAND_NAMES}


def _problem(name: CommandName, argument: str, rules: _Rules) -> str | None:
    if name == "request-changes" and not argument:
        return PROBLEM_REQUEST_CHANGES_EMPTY
    if name != "extend":
        return None
    if not argument:
        return PROBLEM_EXTEND_MISSING
    command = _code(_shorten(f"/extend {argument}"))
    digits = argument.lstrip("0")
    if _MINUTES.fullmatch(argument) is None or not digits:
        return PROBLEM_EXTEND_NOT_WHOLE.format(command=command)
    limit = _EXTEND_CEILING if rules.max_extend_minutes is None else rules.max_extend_minutes
    if len(digits) > len(str(_EXTEND_CEILING)) or int(digits) > limit:
        return PROBLEM_EXTEND_TOO_LONG.format(command=command, limit=limit)
    return None


def _slash_signal(text: str, rules: _Rules) -> str | None:
    """A "/word" signal, matched like a command: at the line's start, ending at a space."""
    line = text.strip().casefold()
    for folded, signal in rules.slash_signals:
        if line == folded or (line.startswith(folded) and line[len(folded)].isspace()):
            return signal
    return None


def _plain_signal(text: str, rules: _Rules) -> str | None:
    """A plain phrase signal: the whole line, ignoring case, spacing and a trailing
    run of punctuation or symbols ("Thanks!" and "thanks 🎉" say "thanks")."""
    phrase = _phrase(text)
    return next((signal for folded, signal in rules.plain_signals if folded == phrase), None)


def _phrase(text: str) -> str:
    words = text.casefold().split()
    phrase = " ".join(words)
    end = len(phrase)
    while end and not phrase[end - 1].isalnum():
        end -= 1
    return phrase[:end]


class _Found:
    """Collects what the lines say, in order, and applies the one-task rule."""

    def __init__(self) -> None:
        self.task: Mention | AgentCommand | None = None
        self.commands: list[Command] = []
        self.signal: str | None = None
        self.problems: list[str] = []

    def add_task(self, task: Mention | AgentCommand) -> None:
        if self.task is None:
            self.task = task
        else:
            self.problems.append(PROBLEM_SECOND_TASK.format(line=task.line))

    def add_line(self, text: str, number: int, rules: _Rules) -> None:
        command = _command(text, number, rules)
        if isinstance(command, Command):
            self.commands.append(command)
        elif command is not None:
            self.problems.append(command)
        if self.signal is None:
            self.signal = _slash_signal(text, rules) or _plain_signal(text, rules)

    def result(self) -> Parsed:
        return Parsed(
            mention=self.task if isinstance(self.task, Mention) else None,
            agent=self.task if isinstance(self.task, AgentCommand) else None,
            commands=tuple(self.commands),
            signal=self.signal,
            problems=tuple(self.problems),
        )


# --- Markdown for the author.


def _code(text: str) -> str:
    """`text` as an inline code span that its own backticks cannot break, so echoed
    text never renders as Markdown or pings anyone."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= _QUOTED_ARGUMENT_MAX:
        return text
    return text[: _QUOTED_ARGUMENT_MAX - 1] + "…"
