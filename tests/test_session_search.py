"""The session directory on a real database: what an access policy lets an agent list, read,
search and send to, full-text ranking and snippets, and queries that must not break."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, select, update

from bot.db.models import SessionRow, TranscriptEvent
from bot.events import ThreadRef
from bot.sessions.search import (
    MAX_SEARCH_TEXT,
    NOT_VISIBLE,
    AccessPolicy,
    SendRefused,
    SessionDirectory,
    UnknownSession,
    fts5_query,
    search_text_for,
)
from bot.sessions.store import Launch, SessionOptions, SessionStore

REPO = "octo-org/app"
PR12 = ThreadRef("github", REPO, "pull", 12)
PR13 = ThreadRef("github", REPO, "pull", 13)
THREAD70 = ThreadRef("github", REPO, "pull", 12, "70")
ISSUE5 = ThreadRef("github", REPO, "issue", 5)


def key(agent: str, thread: ThreadRef) -> str:
    return f"{agent}:{thread.key}"


@dataclass
class World:
    """Five sessions of three agents; the first reviewer session on PR 12 is closed and a
    newer one has the same key."""

    store: SessionStore
    directory: SessionDirectory
    old12: str  # reviewer, PR 12, closed
    new12: str  # reviewer, PR 12, live
    pr13: str  # reviewer, PR 13, live
    coder70: str  # coder, review thread 70 of PR 12, live, child of new12
    research5: str  # research, issue 5, closed


def launch(store: SessionStore, request: str, agent: str, thread: ThreadRef, task: str) -> str:
    result = store.launch(
        Launch(
            client_request_id=request,
            thread=thread,
            installation_id=42,
            agent_id=agent,
            task=task,
            started_by="maintainer",
            trigger_comment_id=None,
            trigger_url=None,
            options=SessionOptions(),
        ),
        max_live=100,
    )
    assert result.created
    return result.session.id


def comment(store: SessionStore, session_id: str, body: str) -> None:
    assert store.add_input(session_id, kind="comment", author="maintainer", body=body) is not None


@pytest.fixture
def world(engine: Engine) -> World:
    store = SessionStore(engine)
    old12 = launch(store, "d-1", "reviewer", PR12, "Review the retry logic in retry.py")
    comment(store, old12, "Watch the exponential backoff in the retry loop")
    store.close(old12, "done", by="maintainer")
    new12 = launch(store, "d-2", "reviewer", PR12, "Review again after the backoff fixes")
    pr13 = launch(store, "d-3", "reviewer", PR13, "Check the checkpoint rollback code")
    coder70 = launch(store, "d-4", "coder", THREAD70, "Implement JWT middleware for the API")
    comment(store, coder70, "The JWT secret must come from settings, never from code")
    research5 = launch(store, "d-5", "research", ISSUE5, "Study rollback strategies")
    store.record(research5, "message", {"turn": 1, "text": "Checkpoint rollback is cheap."})
    store.close(research5, "done", by="maintainer")
    with engine.begin() as conn:  # a delegation: the coder works for the live reviewer
        conn.execute(update(SessionRow).where(SessionRow.id == coder70).values(parent_id=new12))
    return World(store, SessionDirectory(engine), old12, new12, pr13, coder70, research5)


def ids(rows: list[dict[str, object]], field: str = "id") -> list[object]:
    return [r[field] for r in rows]


# ------------------------------------------------------------------ policy, pure


def test_policy_visible_follows_each_field() -> None:
    own, other = "reviewer:github:octo-org/app/pulls/12", "coder:github:octo-org/app/pulls/12"
    assert AccessPolicy().visible(own, "reviewer", "reviewer")
    assert not AccessPolicy().visible(other, "coder", "reviewer")
    assert AccessPolicy(cross_agent=True).visible(other, "coder", "reviewer")
    assert AccessPolicy(allowed_keys=(other,)).visible(other, "coder", "reviewer")
    narrow = AccessPolicy(key_prefix="reviewer:github:octo-org/app/pulls/13")
    assert not narrow.visible(own, "reviewer", "reviewer")
    assert AccessPolicy(key_prefix="reviewer:", allowed_keys=(other,)).visible(
        other, "coder", "reviewer"
    )


# ------------------------------------------------------------------------ list


def test_no_policy_lists_every_session_newest_first(world: World) -> None:
    rows = world.directory.list("reviewer", None)
    assert ids(rows) == [world.research5, world.coder70, world.pr13, world.new12, world.old12]
    coder = rows[1]
    assert coder["key"] == key("coder", THREAD70)
    assert coder["agent"] == "coder"
    assert coder["thread"] == THREAD70.key
    assert coder["state"] == "active"
    assert coder["parent_id"] == world.new12
    assert coder["task"] == "Implement JWT middleware for the API"
    assert str(coder["created_at"]).startswith("20")
    assert ids(world.directory.list("reviewer", None, limit=2)) == [world.research5, world.coder70]


def test_default_policy_lists_only_the_callers_own_agent(world: World) -> None:
    rows = world.directory.list("reviewer", AccessPolicy())
    assert ids(rows) == [world.pr13, world.new12, world.old12]
    assert world.directory.list("nobody", AccessPolicy()) == []


def test_cross_agent_lists_other_agents(world: World) -> None:
    rows = world.directory.list("reviewer", AccessPolicy(cross_agent=True))
    assert len(rows) == 5


def test_key_prefix_narrows_the_list(world: World) -> None:
    pr12 = AccessPolicy(key_prefix=key("reviewer", PR12))
    assert ids(world.directory.list("reviewer", pr12)) == [world.new12, world.old12]
    # A prefix that names another agent shows nothing without cross_agent ...
    coder = AccessPolicy(key_prefix="coder:")
    assert world.directory.list("reviewer", coder) == []
    # ... and only that agent's sessions with it; a prefix of the agent id works too.
    across = AccessPolicy(key_prefix="co", cross_agent=True)
    assert ids(world.directory.list("reviewer", across)) == [world.coder70]
    # Case counts: SQLite's LIKE would ignore it, the prefix test must not.
    assert world.directory.list("reviewer", AccessPolicy(key_prefix="Reviewer:")) == []


def test_allowed_keys_add_sessions_outside_the_prefix_and_agent(world: World) -> None:
    policy = AccessPolicy(
        key_prefix=key("reviewer", PR13), allowed_keys=(key("coder", THREAD70), "no-colon")
    )
    assert ids(world.directory.list("reviewer", policy)) == [world.coder70, world.pr13]


def test_filter_matches_key_task_or_agent_ignoring_case(world: World) -> None:
    d = world.directory
    assert ids(d.list("x", None, filter="jwt")) == [world.coder70]
    assert ids(d.list("x", None, filter="RESEARCH")) == [world.research5]
    assert ids(d.list("x", None, filter="pulls/13")) == [world.pr13]
    assert d.list("x", None, filter="100%_") == []  # LIKE's wildcards are plain text here
    # The filter works inside the policy, not around it.
    assert ids(d.list("reviewer", AccessPolicy(), filter="jwt")) == []


def test_list_refuses_a_limit_below_one(world: World) -> None:
    with pytest.raises(ValueError, match="limit must be at least 1"):
        world.directory.list("reviewer", None, limit=0)


# --------------------------------------------------------------------- history


def test_history_by_key_reads_the_newest_session_and_by_id_any(world: World) -> None:
    d = world.directory
    newest = d.history("reviewer", None, key("reviewer", PR12))
    assert [e["kind"] for e in newest] == ["launched"]
    assert newest[0]["data"]["task"] == "Review again after the backoff fixes"
    older = d.history("reviewer", None, world.old12)
    assert [e["kind"] for e in older] == ["launched", "input", "closed"]
    assert older[1]["data"]["body"] == "Watch the exponential backoff in the retry loop"
    assert [e["id"] for e in older] == sorted(e["id"] for e in older)
    assert all(isinstance(e["at"], str) for e in older)


def test_history_pages_back_from_the_newest_event(world: World) -> None:
    for n in range(5):
        world.store.record(world.pr13, "message", {"turn": 1, "text": f"step {n}"})
    d = world.directory
    texts = [e["data"].get("text") for e in d.history("reviewer", None, world.pr13, limit=2)]
    assert texts == ["step 3", "step 4"]
    page = d.history("reviewer", None, world.pr13, limit=2, offset=2)
    assert [e["data"].get("text") for e in page] == ["step 1", "step 2"]
    assert [e["kind"] for e in d.history("reviewer", None, world.pr13, offset=5)] == ["launched"]
    assert d.history("reviewer", None, world.pr13, offset=50) == []
    with pytest.raises(ValueError, match="offset must be at least 0"):
        d.history("reviewer", None, world.pr13, offset=-1)


def test_history_of_a_hidden_session_reads_as_unknown(world: World) -> None:
    d = world.directory
    hidden = key("coder", THREAD70)
    missing = key("coder", ThreadRef("github", REPO, "pull", 999))
    errors = []
    for target in (hidden, world.coder70, missing, "s-00000000", "gibberish"):
        with pytest.raises(UnknownSession) as caught:
            d.history("reviewer", AccessPolicy(), target)
        assert str(caught.value) == NOT_VISIBLE.format(target=target)
        errors.append(type(caught.value))
    assert set(errors) == {UnknownSession}, "hidden and missing are the same error"
    # The same session is readable under policies that show it.
    assert d.history("reviewer", AccessPolicy(cross_agent=True), hidden)
    assert d.history("reviewer", AccessPolicy(allowed_keys=(hidden,)), world.coder70)
    with pytest.raises(UnknownSession):
        d.history("reviewer", AccessPolicy(key_prefix=key("reviewer", PR13)), world.new12)
    assert d.history("reviewer", AccessPolicy(key_prefix=key("reviewer", PR13)), world.pr13)


# ---------------------------------------------------------------------- search


def test_search_finds_words_and_marks_them(world: World) -> None:
    hits = world.directory.search("reviewer", None, "backoff")
    assert {h["session_id"] for h in hits} == {world.old12, world.new12}
    by_session = {h["session_id"]: h for h in hits}
    old = by_session[world.old12]
    assert old["key"] == key("reviewer", PR12)
    assert old["kind"] == "input"
    assert "**backoff**" in old["snippet"]
    assert isinstance(old["event_id"], int)
    assert by_session[world.new12]["kind"] == "launched"


def test_search_ranks_the_best_match_first(world: World) -> None:
    store = world.store
    store.record(
        world.pr13,
        "message",
        {
            "turn": 1,
            "text": "Reading the module: the database layer opens a connection per request, "
            "the cache is warmed at start, and somewhere near the end a migration mentions "
            "that a failed step may need its schema put back",
        },
    )
    store.record(world.pr13, "message", {"turn": 1, "text": "Migration schema: migration schema."})
    store.record(world.pr13, "message", {"turn": 1, "text": "Unrelated words only."})
    hits = world.directory.search("reviewer", None, "migration schema")
    assert len(hits) == 2
    assert "Migration schema: migration schema" in hits[0]["snippet"].replace("**", "")
    assert hits[0]["score"] > hits[1]["score"]


def test_search_follows_each_policy_field(world: World) -> None:
    d = world.directory

    def found(policy: AccessPolicy | None, query: str = "rollback") -> set[object]:
        return {h["session_id"] for h in d.search("reviewer", policy, query, limit=50)}

    assert found(None) == {world.pr13, world.research5}
    assert found(AccessPolicy()) == {world.pr13}
    assert found(AccessPolicy(cross_agent=True)) == {world.pr13, world.research5}
    assert found(AccessPolicy(key_prefix=key("reviewer", PR12))) == set()
    assert found(AccessPolicy(key_prefix="research:", cross_agent=True)) == {world.research5}
    assert found(AccessPolicy(allowed_keys=(key("research", ISSUE5),))) == {
        world.pr13,
        world.research5,
    }
    assert found(AccessPolicy(), "JWT") == set()
    assert found(AccessPolicy(allowed_keys=(key("coder", THREAD70),)), "JWT") == {world.coder70}
    # can_send limits sending only, never reading.
    assert found(AccessPolicy(can_send=False)) == {world.pr13}


def test_search_filters_by_policy_before_the_limit(world: World) -> None:
    """Hidden sessions hold better matches than the one visible match; with limit 1 the
    visible one must still come back."""
    for n in range(8):
        world.store.record(world.coder70, "message", {"turn": n, "text": "token token token"})
    world.store.record(
        world.pr13, "message", {"turn": 1, "text": "a token, among many other words"}
    )
    hits = world.directory.search("reviewer", AccessPolicy(), "token", limit=1)
    assert [h["session_id"] for h in hits] == [world.pr13]
    assert len(world.directory.search("reviewer", None, "token", limit=3)) == 3


def test_the_rank_window_holds_the_newest_visible_matches(world: World, engine: Engine) -> None:
    """A narrow window ranks only the newest matches, but they are counted after the policy:
    newer matches in hidden sessions never push the visible ones out."""
    store = world.store
    store.record(world.pr13, "message", {"turn": 1, "text": "oldest: token token token"})
    store.record(world.pr13, "message", {"turn": 1, "text": "older: a token among words"})
    store.record(world.pr13, "message", {"turn": 1, "text": "newer: one token, a few words"})
    for n in range(5):
        store.record(world.coder70, "message", {"turn": n, "text": f"hidden token {n}"})
    narrow = SessionDirectory(engine, rank_window=2)
    hits = narrow.search("reviewer", AccessPolicy(), "token", limit=5)
    texts = [h["snippet"].replace("**", "") for h in hits]
    assert len(texts) == 2
    assert {t.split(":")[0] for t in texts} == {"older", "newer"}, texts
    wide = SessionDirectory(engine).search("reviewer", AccessPolicy(), "token", limit=1)
    assert wide[0]["snippet"].startswith("oldest"), "the best match wins when it is in the window"


def test_search_leaves_out_the_current_session(world: World) -> None:
    d = world.directory
    assert {h["session_id"] for h in d.search("reviewer", None, "backoff")} == {
        world.old12,
        world.new12,
    }
    hits = d.search("reviewer", None, "backoff", exclude_session=world.new12)
    assert {h["session_id"] for h in hits} == {world.old12}


# (query, whether it must still find the event "foo bar baz"; None: either way)
HOSTILE = [
    ('foo" OR (', True),
    ("foo*", True),
    ("^foo", True),
    ("foo\x00bar", True),
    ("(foo) AND (bar", True),
    ('"', None),
    ('"""', None),
    ("(", None),
    (")", None),
    ("*", None),
    ("NEAR(foo bar", None),
    ("foo NOT", None),
    ("AND OR NOT", None),
    ("-", None),
    ("--foo", None),
    ("search_text:foo", None),
    ("'; DROP TABLE sessions; --", None),
    ("!!! ::: &&& ||| <-> \\", None),
    ("emoji 🎉 ünïcödé", None),
    ("x" * 5000, None),
    ("   ", None),
    ("", None),
]


@pytest.mark.parametrize(("query", "finds"), HOSTILE)
def test_hostile_queries_neither_break_nor_leak(
    world: World, query: str, finds: bool | None
) -> None:
    world.store.record(world.pr13, "message", {"turn": 1, "text": "foo bar baz"})
    hits = world.directory.search("reviewer", AccessPolicy(), query)
    assert all(h["session_id"] == world.pr13 for h in hits)
    if finds:
        assert "**foo**" in {h["snippet"].split(" ")[0] for h in hits}
    assert len(world.directory.list("reviewer", None)) == 5  # the tables are all still there


def test_query_syntax_reads_like_a_web_search_box(world: World) -> None:
    store, d = world.store, world.directory
    store.record(world.pr13, "message", {"turn": 1, "text": "the cache layer is warm"})
    store.record(world.pr13, "message", {"turn": 1, "text": "layer of the cache"})
    store.record(world.pr13, "message", {"turn": 1, "text": "queue depth alarm"})

    said = {e.id: e.data.get("text") for e in store.transcript(world.pr13)}

    def texts(query: str) -> set[object]:
        return {said.get(h["event_id"]) for h in d.search("reviewer", None, query)}

    assert texts('"cache layer"') == {"the cache layer is warm"}
    assert texts("cache layer") == {"the cache layer is warm", "layer of the cache"}
    assert texts("cache -warm") == {"layer of the cache"}
    assert texts("alarm or warm") == {"the cache layer is warm", "queue depth alarm"}


def test_fts5_query_quotes_every_word() -> None:
    assert fts5_query('foo" OR (') == '"foo"'
    assert fts5_query("a or b c -d") == '(("a") OR ("b" AND "c")) NOT ("d")'
    assert fts5_query('"exact words" -"left out"') == '("exact words") NOT ("left out")'
    assert fts5_query("col:val NEAR(x") == '"col val" AND "NEAR x"'
    for nothing in ("", "   ", "(((", "or", "-alone", '"'):
        assert fts5_query(nothing) is None


def test_purged_sessions_are_not_found(world: World) -> None:
    d = world.directory
    assert {h["session_id"] for h in d.search("x", None, "JWT")} == {world.coder70}
    assert world.store.purge(world.coder70)
    assert d.search("x", None, "JWT") == []
    assert d.search("x", None, "settings") == []


def test_amended_inputs_are_found_by_their_new_words(world: World) -> None:
    store = world.store
    assert store.add_input(world.pr13, kind="comment", author="m", body="first", comment_id="c9")
    assert store.amend_input("c9", "second thoughts about zebras", by="m") == world.pr13
    assert {h["kind"] for h in world.directory.search("x", None, "zebras")} == {"input_amended"}


# ------------------------------------------------------------------------ send


def test_send_reaches_the_live_session_of_a_key(world: World) -> None:
    d = world.directory
    assert d.resolve_live("reviewer", None, key("reviewer", PR12)) == world.new12
    assert d.resolve_live("reviewer", None, world.new12) == world.new12
    assert d.resolve_live("reviewer", None, world.old12) is None, "that session has ended"
    assert d.resolve_live("reviewer", None, key("research", ISSUE5)) is None
    with pytest.raises(UnknownSession):
        d.resolve_live("reviewer", None, key("research", PR13))


def test_send_follows_each_policy_field(world: World) -> None:
    d = world.directory
    coder = key("coder", THREAD70)
    with pytest.raises(UnknownSession):
        d.resolve_live("reviewer", AccessPolicy(), coder)
    assert d.resolve_live("reviewer", AccessPolicy(cross_agent=True), coder) == world.coder70
    assert d.resolve_live("reviewer", AccessPolicy(allowed_keys=(coder,)), coder) == world.coder70
    narrow = AccessPolicy(key_prefix=key("reviewer", PR13))
    assert d.resolve_live("reviewer", narrow, key("reviewer", PR13)) == world.pr13
    with pytest.raises(UnknownSession):
        d.resolve_live("reviewer", narrow, key("reviewer", PR12))
    # can_send = false refuses even a session it may read, and says why.
    with pytest.raises(SendRefused, match="can_send"):
        d.resolve_live("reviewer", AccessPolicy(can_send=False), world.pr13)
    with pytest.raises(SendRefused):
        d.resolve_live("reviewer", AccessPolicy(can_send=False, cross_agent=True), coder)


# ----------------------------------------------------------------- search text


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        ("launched", {"task": "do the thing", "by": "m", "options": {}}, "do the thing"),
        ("input", {"body": "a comment", "author": "m"}, "a comment"),
        ("input_amended", {"body": "edited", "by": "m"}, "edited"),
        ("message", {"turn": 1, "text": "I think so"}, "I think so"),
        ("tool_call", {"tool": "reply", "args": {"body": "Done."}}, "Done."),
        ("tool_call", {"tool": "task_completed", "args": {"output": "All good"}}, "All good"),
        (
            "tool_call",
            {"tool": "delegate_to_sub_agent", "args": {"agent_id": "coder", "task": "Fix it"}},
            "Fix it",
        ),
        ("tool_call", {"tool": "sessions_send", "args": {"key": "k", "message": "hi"}}, "hi"),
        ("tool_call", {"tool": "read_file", "args": {"path": "a.py"}}, None),
        ("tool_call", {"tool": "x", "args": "not a mapping"}, None),
        (
            "tool_result",
            {"tool": "read_file", "ok": True, "content": "def f(): ..."},
            "def f(): ...",
        ),
        ("tool_result", {"tool": "sessions_search", "content": "copied snippets"}, None),
        ("tool_result", {"tool": "memory_read", "content": "a note"}, None),
        ("delegation", {"child": "s-1", "task": "Sub task"}, "Sub task"),
        ("delegation_result", {"child": "s-1", "output": "Sub output"}, "Sub output"),
        ("closed", {"reason": "done", "by": "m"}, None),
        ("write", {"key": "k", "kind": "comment", "thread": "t"}, None),
        ("turn_started", {"turn": 1, "inputs": [1]}, None),
        ("failed", {"turn": 1, "error": "boom"}, None),
        ("input_ignored", {"by": "outsider", "body": "not for the agent"}, None),
        ("input", {"body": "   "}, None),
        ("input", {"body": "nul\x00byte"}, "nulbyte"),
    ],
)
def test_search_text_for(kind: str, data: dict[str, object], expected: str | None) -> None:
    assert search_text_for(kind, data) == expected


def test_search_text_is_capped() -> None:
    text = search_text_for("message", {"text": "word " * 20_000})
    assert text is not None
    assert len(text) == MAX_SEARCH_TEXT


def test_the_store_writes_search_text_with_each_event(engine: Engine) -> None:
    store = SessionStore(engine)
    sid = launch(store, "d-1", "reviewer", PR12, "Review the parser")
    comment(store, sid, "And the lexer")
    store.record(sid, "tool_call", {"turn": 1, "tool": "reply", "args": {"body": "Looking."}})
    store.close(sid, "done", by="m")
    with engine.connect() as conn:
        rows = conn.execute(
            select(TranscriptEvent.kind, TranscriptEvent.search_text)
            .where(TranscriptEvent.session_id == sid)
            .order_by(TranscriptEvent.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("launched", "Review the parser"),
        ("input", "And the lexer"),
        ("tool_call", "Looking."),
        ("closed", None),
    ]
