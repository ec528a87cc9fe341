"""Agent memory on a real database: notes replace each other by key, stay with their agent
and repository, and refuse what they cannot keep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from bot.db.models import AgentMemory
from bot.sessions.memory import MAX_KEY, MAX_VALUE, MemoryStore

REPO = ("github", "octo-org/app")


def test_write_replaces_a_note_and_read_returns_it(engine: Engine) -> None:
    times = iter([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)])
    memory = MemoryStore(engine, clock=lambda: next(times))
    memory.write(*REPO, "reviewer", "style", "tabs", "s-00000001")
    memory.write(*REPO, "reviewer", "style", "four spaces", "s-00000002")
    assert memory.read(*REPO, "reviewer", "style") == {"style": "four spaces"}
    with engine.connect() as conn:
        rows = conn.execute(select(AgentMemory.session_id, AgentMemory.updated_at)).all()
    assert len(rows) == 1, "an upsert, not a second row"
    assert rows[0].session_id == "s-00000002"
    assert rows[0].updated_at == datetime(2026, 1, 2, tzinfo=UTC)


def test_read_all_is_sorted_by_key_and_a_missing_note_is_empty(engine: Engine) -> None:
    memory = MemoryStore(engine)
    for key in ("zeta", "Alpha", "beta", "alpha"):
        memory.write(*REPO, "reviewer", key, f"note {key}", None)
    assert list(memory.read(*REPO, "reviewer")) == ["Alpha", "alpha", "beta", "zeta"]
    assert memory.read(*REPO, "reviewer", "gamma") == {}
    assert memory.read(*REPO, "nobody") == {}


def test_notes_stay_with_their_host_repository_and_agent(engine: Engine) -> None:
    memory = MemoryStore(engine)
    memory.write("github", "octo-org/app", "reviewer", "plan", "A", None)
    memory.write("github", "octo-org/other", "reviewer", "plan", "B", None)
    memory.write("gitlab", "octo-org/app", "reviewer", "plan", "C", None)
    memory.write("github", "octo-org/app", "coder", "plan", "D", None)
    assert memory.read("github", "octo-org/app", "reviewer") == {"plan": "A"}
    assert memory.read("github", "octo-org/other", "reviewer") == {"plan": "B"}
    assert memory.read("gitlab", "octo-org/app", "reviewer") == {"plan": "C"}
    assert memory.read("github", "octo-org/app", "coder") == {"plan": "D"}
    assert memory.delete("github", "octo-org/app", "reviewer", "plan")
    assert not memory.delete("github", "octo-org/app", "reviewer", "plan")
    assert memory.read("github", "octo-org/app", "reviewer") == {}
    assert memory.read("github", "octo-org/app", "coder") == {"plan": "D"}


def test_keys_are_trimmed_and_sizes_are_capped(engine: Engine) -> None:
    memory = MemoryStore(engine)
    memory.write(*REPO, "reviewer", "  plan \n", "x", None)
    assert memory.read(*REPO, "reviewer", "plan") == {"plan": "x"}
    longest = "k" * MAX_KEY
    memory.write(*REPO, "reviewer", longest, "v" * MAX_VALUE, None)
    assert memory.read(*REPO, "reviewer", longest) == {longest: "v" * MAX_VALUE}
    with pytest.raises(ValueError, match="at most 200 characters; got 201"):
        memory.write(*REPO, "reviewer", longest + "k", "v", None)
    with pytest.raises(ValueError, match="at most 20000 characters; got 20001"):
        memory.write(*REPO, "reviewer", "big", "v" * (MAX_VALUE + 1), None)
    for blank in ("", "   "):
        with pytest.raises(ValueError, match="non-empty key"):
            memory.write(*REPO, "reviewer", blank, "v", None)
    with pytest.raises(ValueError, match="NUL"):
        memory.write(*REPO, "reviewer", "nul", "a\x00b", None)
    with pytest.raises(ValueError, match="host, repository and agent"):
        memory.write("github", "", "reviewer", "k", "v", None)
    # Nothing refused was kept, and what was kept is intact.
    assert set(memory.read(*REPO, "reviewer")) == {"plan", longest}


def test_an_agent_keeps_a_bounded_number_of_notes(engine: Engine) -> None:
    memory = MemoryStore(engine, max_notes=2)
    memory.write(*REPO, "reviewer", "a", "1", None)
    memory.write(*REPO, "reviewer", "b", "2", None)
    memory.write(*REPO, "reviewer", "a", "1 again", None)  # replacing is always allowed
    with pytest.raises(ValueError, match="already keeps 2 notes"):
        memory.write(*REPO, "reviewer", "c", "3", None)
    memory.write(*REPO, "coder", "c", "3", None)  # the bound is per agent
    memory.delete(*REPO, "reviewer", "b")
    memory.write(*REPO, "reviewer", "c", "3", None)
    assert memory.read(*REPO, "reviewer") == {"a": "1 again", "c": "3"}


def test_clock_defaults_to_now(engine: Engine) -> None:
    MemoryStore(engine).write(*REPO, "reviewer", "k", "v", None)
    with engine.connect() as conn:
        at = conn.execute(select(AgentMemory.updated_at)).scalar_one()
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)
