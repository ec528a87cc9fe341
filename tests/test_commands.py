"""bot.commands: which lines of a comment are commands, mentions and signals, and /help."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import commands
from bot.commands import (
    COMMAND_NAMES,
    HELP_ROWS,
    PROBLEM_EXTEND_MISSING,
    PROBLEM_EXTEND_NOT_WHOLE,
    PROBLEM_EXTEND_TOO_LONG,
    PROBLEM_REQUEST_CHANGES_EMPTY,
    PROBLEM_SECOND_TASK,
    WHO_WRITE_ACCESS,
    AgentCommand,
    Command,
    CommandDoc,
    Mention,
    Parsed,
    help_text,
    parse,
)

NAMES = ("threadline", "tl-helper")
AGENTS = ("reviewer", "fixer")
SIGNALS = ("/done", "thanks", "thank you")


def read(
    body: str, *, user_signals: tuple[str, ...] = SIGNALS, max_extend: int | None = None
) -> Parsed:
    return parse(
        body,
        bot_names=NAMES,
        agent_ids=AGENTS,
        user_signals=user_signals,
        max_extend_minutes=max_extend,
    )


# --- Nothing for the bot: each body holds a would-be trigger that must not count.

NOTHING = [
    pytest.param("", id="empty"),
    pytest.param("Looks good to me.\n\nLet's merge.", id="prose"),
    pytest.param("> /done", id="quoted"),
    pytest.param("  > /done", id="quoted-indented"),
    pytest.param(">/done", id="quoted-no-space"),
    pytest.param("> > /status", id="quoted-nested"),
    pytest.param("> @threadline fix it", id="quoted-mention"),
    pytest.param("> /agent reviewer look", id="quoted-agent"),
    pytest.param("> thanks", id="quoted-signal"),
    pytest.param("> /extend soon", id="quoted-invalid-command"),
    pytest.param("```\n/done\n```", id="backtick-fence"),
    pytest.param("```python\n/done\n```", id="backtick-fence-info"),
    pytest.param("~~~\n/done\n~~~", id="tilde-fence"),
    pytest.param("~~~ sh\n@threadline fix it\n~~~", id="tilde-fence-mention"),
    pytest.param("   ```\nthanks\n   ```", id="fence-indented-3"),
    pytest.param("```\n/done", id="unclosed-fence-runs-to-end"),
    pytest.param("````\n/done\n```\n/status", id="closer-shorter-than-opener"),
    pytest.param("~~~\n/done\n```\n/status", id="closer-other-character"),
    pytest.param("```\n/done\n``` not a closer\n/status", id="closer-with-text"),
    pytest.param("    /done", id="indented-code"),
    pytest.param("\t/done", id="indented-code-tab"),
    pytest.param("     @threadline fix it", id="indented-code-mention"),
    pytest.param("`/done`", id="inline-code"),
    pytest.param("`/done` is what ends it", id="inline-code-sentence"),
    pytest.param("`@threadline fix it`", id="inline-code-mention"),
    pytest.param("thanks @threadline", id="mention-mid-sentence"),
    pytest.param("cc @threadline fix it", id="mention-after-word"),
    pytest.param("please /done", id="command-mid-sentence"),
    pytest.param("@threadline-dev fix it", id="other-user-hyphen"),
    pytest.param("@threadline.io fix it", id="other-user-dot"),
    pytest.param("@threadlinebot fix it", id="other-user-longer"),
    pytest.param("@threadline[bot]x fix it", id="bot-suffix-then-letters"),
    pytest.param("@ threadline fix it", id="at-space"),
    pytest.param("/donezo", id="longer-word"),
    pytest.param("/done.", id="word-with-dot"),
    pytest.param("/status-report", id="longer-word-hyphen"),
    pytest.param("/extend15", id="extend-glued-number"),
    pytest.param("/agents reviewer look", id="agents"),
    pytest.param("/lgtm", id="another-bots-command"),
    pytest.param("/ done", id="slash-space"),
    pytest.param("<!-- /done -->", id="html-comment"),
    pytest.param("<!--\n/done\n@threadline fix it\nthanks\n-->", id="html-comment-multiline"),
    pytest.param("<!-- note --> /done", id="after-comment-same-line"),
    pytest.param("<!-- a --> <!-- b\n/done\n-->", id="second-comment-on-line-stays-open"),
    pytest.param("<!-- threadline:status s-7f3a -->\n<!--\n/status\n-->", id="bot-marker"),
    pytest.param("text <!-- start\n/done\n--> /status", id="comment-opened-mid-line"),
    pytest.param("thanks for nothing, this is wrong", id="signal-word-in-sentence"),
    pytest.param("no thanks", id="signal-word-not-whole-line"),
    pytest.param("`thanks`", id="signal-in-inline-code"),
]


@pytest.mark.parametrize("body", NOTHING)
def test_nothing_for_the_bot(body: str) -> None:
    parsed = read(body)
    assert parsed == Parsed()
    assert parsed.asks_nothing


# --- Commands, in the order they appear: (name, argument, line).

COMMANDS = [
    pytest.param("/done", [("done", "", 1)], id="done"),
    pytest.param("/DONE", [("done", "", 1)], id="upper-case"),
    pytest.param("/Status", [("status", "", 1)], id="title-case"),
    pytest.param("   /done", [("done", "", 1)], id="three-spaces"),
    pytest.param("/done\t ", [("done", "", 1)], id="trailing-whitespace"),
    pytest.param("/done\r\n", [("done", "", 1)], id="crlf"),
    pytest.param(
        "hi\r\n/status\r\n/done\r\n", [("status", "", 2), ("done", "", 3)], id="crlf-several"
    ),
    pytest.param("hi\r/status", [("status", "", 2)], id="cr-only"),
    pytest.param("/status\n/done", [("status", "", 1), ("done", "", 2)], id="several-in-order"),
    pytest.param("/done\n/done", [("done", "", 1), ("done", "", 2)], id="repeated-kept"),
    pytest.param("/status /done", [("status", "/done", 1)], id="one-per-line"),
    pytest.param("/done the tests pass", [("done", "the tests pass", 1)], id="argument"),
    pytest.param("/cancel", [("cancel", "", 1)], id="cancel"),
    pytest.param("/help", [("help", "", 1)], id="help"),
    pytest.param("/approve", [("approve", "", 1)], id="approve"),
    pytest.param(
        "/request-changes keep the old timeout",
        [("request-changes", "keep the old timeout", 1)],
        id="request-changes",
    ),
    pytest.param("/extend 15", [("extend", "15", 1)], id="extend"),
    pytest.param("/Extend   15  ", [("extend", "15", 1)], id="extend-spacing"),
    pytest.param("/extend 015", [("extend", "15", 1)], id="extend-leading-zero"),
    pytest.param("/extend 15 <!-- for the CI run -->", [("extend", "15", 1)], id="comment-after"),
    pytest.param("```\n/done\n```\n/status", [("status", "", 4)], id="after-backtick-fence"),
    pytest.param("~~~ python\n/done\n~~~\n/status", [("status", "", 4)], id="after-tilde-fence"),
    pytest.param("````\n```\n/done\n````\n/cancel", [("cancel", "", 5)], id="inner-fence-kept"),
    pytest.param("```\n/done\n`````\n/help", [("help", "", 4)], id="closed-by-longer-fence"),
    pytest.param("```\r\n/done\r\n```\r\n/help", [("help", "", 4)], id="fence-crlf"),
    pytest.param("```a```\n/help", [("help", "", 2)], id="inline-not-fence"),
    pytest.param("/cancel\n> /done", [("cancel", "", 1)], id="before-quote"),
    pytest.param("> ```\n/done", [("done", "", 2)], id="fence-in-quote-ends-with-it"),
    pytest.param("> <!-- note\n/done", [("done", "", 2)], id="comment-in-quote-ends-with-it"),
    pytest.param("    code\n/done", [("done", "", 2)], id="after-indented-code"),
    pytest.param("<!-- threadline:s-7f3a -->\n/status", [("status", "", 2)], id="after-marker"),
    pytest.param("<!--\n/done\n-->\n/help", [("help", "", 4)], id="after-multiline-comment"),
    pytest.param("<!-- a --> <!-- b\n-->\n/help", [("help", "", 3)], id="two-comments-one-line"),
    pytest.param("`<!--` opens one\n/done", [("done", "", 2)], id="opener-in-inline-code"),
    pytest.param("/done <!-- start\n/status\n-->", [("done", "", 1)], id="comment-opens-after"),
    pytest.param(
        "<!-- `-->` /done\n/status", [("status", "", 2)], id="comment-closes-inside-backticks"
    ),
]


@pytest.mark.parametrize(("body", "expected"), COMMANDS)
def test_commands(body: str, expected: list[tuple[str, str, int]]) -> None:
    parsed = read(body)
    assert [(c.name, c.argument, c.line) for c in parsed.commands] == expected
    assert (parsed.mention, parsed.agent, parsed.problems) == (None, None, ())


def test_extend_within_the_limit() -> None:
    assert read("/extend 60", max_extend=60).commands == (Command("extend", "60", 1),)


# --- Mentions: the task runs on to the next command or mention line.

MULTILINE = """\
@threadline fix the retry
logic in bot/worker.py

> the old code retried forever
```python
while True:  # /done
```
/status
"""

MENTIONS = [
    pytest.param(
        "@threadline fix the flaky test",
        Parsed(mention=Mention("threadline", "fix the flaky test", 1)),
        id="mention",
    ),
    pytest.param(
        "@ThreadLine fix it", Parsed(mention=Mention("threadline", "fix it", 1)), id="case"
    ),
    pytest.param(
        "@THREADLINE[bot] fix it",
        Parsed(mention=Mention("threadline", "fix it", 1)),
        id="bot-suffix",
    ),
    pytest.param(
        "@threadline: fix it", Parsed(mention=Mention("threadline", "fix it", 1)), id="colon"
    ),
    pytest.param(
        "@threadline, fix it", Parsed(mention=Mention("threadline", "fix it", 1)), id="comma"
    ),
    pytest.param(
        "   @threadline fix it",
        Parsed(mention=Mention("threadline", "fix it", 1)),
        id="three-spaces",
    ),
    pytest.param(
        "@tl-helper fix it", Parsed(mention=Mention("tl-helper", "fix it", 1)), id="second-name"
    ),
    pytest.param("@threadline", Parsed(mention=Mention("threadline", "", 1)), id="no-task"),
    pytest.param(
        "Hi!\n\n@threadline fix it", Parsed(mention=Mention("threadline", "fix it", 3)), id="later"
    ),
    pytest.param(
        MULTILINE,
        Parsed(
            mention=Mention(
                "threadline",
                "fix the retry\nlogic in bot/worker.py\n\n> the old code retried forever\n"
                "```python\nwhile True:  # /done\n```",
                1,
            ),
            commands=(Command("status", "", 8),),
        ),
        id="multiline-keeps-quotes-and-code",
    ),
    pytest.param(
        "@threadline fix\r\nthe test\r\n\r\n",
        Parsed(mention=Mention("threadline", "fix\nthe test", 1)),
        id="multiline-crlf",
    ),
    pytest.param(
        "@threadline\n\n    def f(): pass\n",
        Parsed(mention=Mention("threadline", "    def f(): pass", 1)),
        id="task-keeps-indentation",
    ),
    pytest.param(
        "@threadline fix it\n> /done\n<!-- /status -->",
        Parsed(mention=Mention("threadline", "fix it\n> /done\n<!-- /status -->", 1)),
        id="ignored-lines-stay-in-task",
    ),
    pytest.param(
        "@threadline fix <!-- the cache --> it\n",
        Parsed(mention=Mention("threadline", "fix <!-- the cache --> it", 1)),
        id="comment-on-mention-line-kept",
    ),
    pytest.param(
        "@threadline fix it\n/unknown thing",
        Parsed(mention=Mention("threadline", "fix it\n/unknown thing", 1)),
        id="unknown-command-stays-in-task",
    ),
    pytest.param(
        "@threadline fix it\nthanks",
        Parsed(mention=Mention("threadline", "fix it\nthanks", 1)),
        id="plain-signal-is-task-text",
    ),
    pytest.param(
        "@threadline fix it\n/done",
        Parsed(
            mention=Mention("threadline", "fix it", 1),
            commands=(Command("done", "", 2),),
            signal="/done",
        ),
        id="ends-at-command",
    ),
    pytest.param(
        "@threadline fix it\n/extend soon",
        Parsed(
            mention=Mention("threadline", "fix it", 1),
            problems=(PROBLEM_EXTEND_NOT_WHOLE.format(command="`/extend soon`"),),
        ),
        id="ends-at-invalid-command",
    ),
    pytest.param(
        "@threadline fix it\n@tl-helper and this",
        Parsed(
            mention=Mention("threadline", "fix it", 1),
            problems=(PROBLEM_SECOND_TASK.format(line=2),),
        ),
        id="second-mention-is-a-problem",
    ),
]


@pytest.mark.parametrize(("body", "expected"), MENTIONS)
def test_mentions(body: str, expected: Parsed) -> None:
    assert read(body) == expected


# --- /agent [agent-id] <task>

AGENT_FORMS = [
    pytest.param(
        "/agent reviewer check the retry logic",
        Parsed(agent=AgentCommand("reviewer", "check the retry logic", 1)),
        id="named",
    ),
    pytest.param(
        "/AGENT Reviewer check it",
        Parsed(agent=AgentCommand("reviewer", "check it", 1)),
        id="case",
    ),
    pytest.param(
        "/agent reviewer\tcheck it", Parsed(agent=AgentCommand("reviewer", "check it", 1)), id="tab"
    ),
    pytest.param(
        "/agent check the retry logic",
        Parsed(agent=AgentCommand(None, "check the retry logic", 1)),
        id="default-agent",
    ),
    pytest.param(
        "/agent unknown-agent do it",
        Parsed(agent=AgentCommand(None, "unknown-agent do it", 1)),
        id="unknown-id-is-task",
    ),
    pytest.param("/agent", Parsed(agent=AgentCommand(None, "", 1)), id="alone"),
    pytest.param("/agent reviewer", Parsed(agent=AgentCommand("reviewer", "", 1)), id="id-only"),
    pytest.param(
        "/agent reviewer look  <!-- at the cache -->",
        Parsed(agent=AgentCommand("reviewer", "look  <!-- at the cache -->", 1)),
        id="comment-kept-in-task",
    ),
    pytest.param(
        "/help\n/agent fixer fix it\nand add a test\n/status",
        Parsed(
            agent=AgentCommand("fixer", "fix it\nand add a test", 2),
            commands=(Command("help", "", 1), Command("status", "", 4)),
        ),
        id="multiline-between-commands",
    ),
    pytest.param(
        "/agent reviewer look\n@threadline fix it",
        Parsed(
            agent=AgentCommand("reviewer", "look", 1),
            problems=(PROBLEM_SECOND_TASK.format(line=2),),
        ),
        id="then-mention",
    ),
    pytest.param(
        "@threadline fix it\n/agent reviewer look",
        Parsed(
            mention=Mention("threadline", "fix it", 1),
            problems=(PROBLEM_SECOND_TASK.format(line=2),),
        ),
        id="after-mention",
    ),
]


@pytest.mark.parametrize(("body", "expected"), AGENT_FORMS)
def test_agent_command(body: str, expected: Parsed) -> None:
    assert read(body) == expected


# --- User signals: "/word" like a command, a phrase by a whole line.

SIGNAL_CASES = [
    pytest.param("thanks", SIGNALS, "thanks", id="phrase"),
    pytest.param("Thanks!", SIGNALS, "thanks", id="punctuation"),
    pytest.param("  THANKS.  ", SIGNALS, "thanks", id="case-and-spaces"),
    pytest.param("thanks!!!", SIGNALS, "thanks", id="many-marks"),
    pytest.param("Thank   you!", SIGNALS, "thank you", id="inner-spaces"),
    pytest.param("thank you 🎉", SIGNALS, "thank you", id="emoji"),
    pytest.param("thanks\r\n", SIGNALS, "thanks", id="crlf"),
    pytest.param("Looks good.\nThanks!", SIGNALS, "thanks", id="last-line"),
    pytest.param("Thanks!\nthank you", SIGNALS, "thanks", id="first-wins"),
    pytest.param("/DONE for today", SIGNALS, "/done", id="slash-like-command"),
    pytest.param("/lgtm", ("/lgtm",), "/lgtm", id="custom-slash"),
    pytest.param("/LGTM ship it", ("/lgtm",), "/lgtm", id="custom-slash-argument"),
    pytest.param("/lgtm-ish", ("/lgtm",), None, id="custom-slash-longer-word"),
    pytest.param("thanks", ("/done",), None, id="not-configured"),
    pytest.param("thanks for nothing, this is wrong", SIGNALS, None, id="sentence"),
    pytest.param("> thanks", SIGNALS, None, id="quoted"),
    pytest.param("```\nthanks\n```", SIGNALS, None, id="fenced"),
    pytest.param("<!-- thanks -->", SIGNALS, None, id="html-comment"),
]


@pytest.mark.parametrize(("body", "signals", "expected"), SIGNAL_CASES)
def test_user_signals(body: str, signals: tuple[str, ...], expected: str | None) -> None:
    assert read(body, user_signals=signals).signal == expected


def test_slash_signal_ends_a_task() -> None:
    assert read("@threadline fix it\n/lgtm", user_signals=("/lgtm",)) == Parsed(
        mention=Mention("threadline", "fix it", 1), signal="/lgtm"
    )


def test_slash_signal_that_is_a_command_is_both() -> None:
    assert read("/done") == Parsed(commands=(Command("done", "", 1),), signal="/done")
    assert read("/done", user_signals=("thanks",)) == Parsed(commands=(Command("done", "", 1),))


# --- Invalid commands are reported, never silently dropped or acted on.

PROBLEMS = [
    pytest.param("/extend soon", None, "`/extend soon`", PROBLEM_EXTEND_NOT_WHOLE, id="word"),
    pytest.param("/extend -3", None, "`/extend -3`", PROBLEM_EXTEND_NOT_WHOLE, id="negative"),
    pytest.param("/extend 0", None, "`/extend 0`", PROBLEM_EXTEND_NOT_WHOLE, id="zero"),
    pytest.param("/extend 000", None, "`/extend 000`", PROBLEM_EXTEND_NOT_WHOLE, id="zeros"),
    pytest.param("/extend 1.5", None, "`/extend 1.5`", PROBLEM_EXTEND_NOT_WHOLE, id="fraction"),
    pytest.param("/extend +5", None, "`/extend +5`", PROBLEM_EXTEND_NOT_WHOLE, id="plus-sign"),
    pytest.param(
        "/extend \u0661\u0665",
        None,
        "`/extend \u0661\u0665`",
        PROBLEM_EXTEND_NOT_WHOLE,
        id="non-ascii-digits",
    ),
    pytest.param(
        "/extend 15 minutes",
        None,
        "`/extend 15 minutes`",
        PROBLEM_EXTEND_NOT_WHOLE,
        id="trailing-words",
    ),
    pytest.param(
        "/extend `x`",
        None,
        "`` /extend `x` ``",
        PROBLEM_EXTEND_NOT_WHOLE,
        id="backticks-echoed-safely",
    ),
    pytest.param(
        "/extend " + "9" * 50,
        None,
        "`/extend " + "9" * 31 + "…`",
        PROBLEM_EXTEND_TOO_LONG,
        id="huge-shortened",
    ),
    pytest.param("/extend 90", 60, "`/extend 90`", PROBLEM_EXTEND_TOO_LONG, id="over-limit"),
    pytest.param("/extend", None, "", PROBLEM_EXTEND_MISSING, id="extend-without-minutes"),
    pytest.param(
        "/request-changes", None, "", PROBLEM_REQUEST_CHANGES_EMPTY, id="request-changes-empty"
    ),
]


@pytest.mark.parametrize(("body", "limit", "echoed", "template"), PROBLEMS)
def test_invalid_commands(body: str, limit: int | None, echoed: str, template: str) -> None:
    parsed = read(body + "\n/status", max_extend=limit)
    ceiling = 999_999_999 if limit is None else limit
    assert parsed.problems == (template.format(command=echoed, limit=ceiling),)
    assert parsed.commands == (Command("status", "", 2),)  # the valid ones still count


def test_problem_wording() -> None:
    assert read("/extend soon").problems == (
        "`/extend soon`: the minutes must be a positive whole number, like `/extend 15`.",
    )


# --- Properties over many bodies (enumerated; the shortcut's below is drawn by hypothesis).

TRIGGERS = [
    "/done",
    "/DONE now",
    "  /status",
    "/extend 15",
    "/extend soon",
    "/request-changes",
    "/agent reviewer look",
    "/approve",
    "@threadline fix it",
    "@ThreadLine[bot] go",
    "thanks",
    "Thank you!",
]
STRUCTURE = ["", "plain words", "```", "~~~~", "<!--", "-->", "    indented", "> nested"]


@pytest.mark.parametrize("line", TRIGGERS)
def test_each_trigger_counts_on_its_own(line: str) -> None:
    assert not read(line).asks_nothing  # so the properties below test something


def test_quoted_bodies_ask_nothing() -> None:
    pool = TRIGGERS + STRUCTURE
    for size in (1, 2, 3):
        for lines in itertools.product(pool, repeat=size):
            for prefix, newline in (("> ", "\n"), (">", "\r\n"), ("   > ", "\n")):
                body = newline.join(prefix + line for line in lines)
                assert read(body) == Parsed(), body


WRAPPERS = [
    pytest.param("```\n{}\n```", id="backtick-fence"),
    pytest.param("~~~text\n{}\n~~~", id="tilde-fence"),
    pytest.param("````\n```\n{}\n```\n````", id="nested-fence"),
    pytest.param("```\n{}", id="unclosed-fence"),
    pytest.param("<!--\n{}\n-->", id="html-comment"),
    pytest.param("<!-- {} -->", id="html-comment-inline"),
    pytest.param("    {}", id="indented"),
    pytest.param("`{}`", id="inline-code"),
    pytest.param("ok {}", id="mid-line"),
]


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_wrapped_triggers_ask_nothing(wrapper: str) -> None:
    for line in TRIGGERS:
        body = wrapper.format(line.strip())
        assert read(body) == Parsed(), body


# Pieces of lines that decide what a body says (and some that look like they might).
PIECES = [*TRIGGERS, *STRUCTURE, "thanks.", "THANK YOU 🎉", "thanksgiving", "/", "@", "a/b"]
LEADS = ["", " ", "   ", "    ", "\t", "\u00a0", "\u2028", "\x0c", "> "]
BREAKS = ["\n", "\r\n", "\r", "\n\n"]


@st.composite
def bodies(draw: st.DrawFn) -> str:
    lines = draw(
        st.lists(
            st.tuples(st.sampled_from(LEADS), st.sampled_from(PIECES), st.sampled_from(PIECES)),
            max_size=6,
        )
    )
    breaks = draw(st.lists(st.sampled_from(BREAKS), min_size=len(lines), max_size=len(lines)))
    joined = (
        lead + first + draw(st.sampled_from([" ", "", "\n"])) + second
        for lead, first, second in lines
    )
    return "".join(line + end for line, end in zip(joined, breaks, strict=True))


@settings(max_examples=600, deadline=None)
@given(bodies(), st.sampled_from([SIGNALS, ("/done",), ()]))
def test_the_shortcut_for_bodies_that_say_nothing_never_changes_what_a_body_says(
    body: str, signals: tuple[str, ...]
) -> None:
    rules = commands._Rules.build(NAMES, AGENTS, signals, 120)
    assert read(body, user_signals=signals, max_extend=120) == commands._read_lines(body, rules)


def test_the_shortcut_reads_a_long_run_of_blank_lines_once() -> None:
    """Whitespace scanned per line start would be quadratic in a hostile body."""
    for blank in ("\n", "\r", " \n", "\u2028\n"):
        body = blank * 50_000 + "x"
        assert read(body) == Parsed()
    assert read("\n" * 50_000 + "  /done").signal == "/done"


# --- /help


def test_help_lists_every_command() -> None:
    text = help_text("threadline", SIGNALS, 120)
    for name in (*COMMAND_NAMES, "agent"):
        assert f"`/{name}" in text
    assert "`@threadline <task>`" in text
    assert text.count(WHO_WRITE_ACCESS) == len(HELP_ROWS)
    assert "`/extend 15`" in text
    assert "At most 120 minutes" in text
    assert "`thanks` or `thank you`" in text


def test_help_without_signals_or_limit() -> None:
    text = help_text("@threadline[bot]")
    assert "`@threadline <task>`" in text
    assert "At most" not in text
    assert "tells the agent you are done" not in text


@pytest.mark.parametrize("doc", HELP_ROWS, ids=[d.usage.split()[0] for d in HELP_ROWS])
def test_help_examples_are_understood(doc: CommandDoc) -> None:
    example = doc.example.format(bot="threadline")
    parsed = read(example)
    assert not parsed.asks_nothing
    assert parsed.problems == ()
