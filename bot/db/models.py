"""SQLAlchemy models: the tables every process shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON

from bot.db.types import BigId, UtcDateTime


class Base(DeclarativeBase):
    pass


class Delivery(Base):
    """One webhook request, stored raw before it was acknowledged."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("host", "delivery_id", name="uq_deliveries_host_delivery_id"),
        Index("ix_deliveries_claimable", "status", "next_attempt_at", "id"),
        Index(
            "ix_deliveries_thread_order", "thread_key", "status", "event_time", "received_at", "id"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # pending -> processing -> done | ignored | failed (pending again between retries)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Filled in by the worker once it has normalized the delivery (bot/worker.py): the
    # thread it belongs to ("" for none) and when the host says the event happened
    # (the time received when the payload does not say). A thread's deliveries are
    # handled in (event_time, received_at, id) order.
    thread_key: Mapped[str | None] = mapped_column(String(400))
    event_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # handling last began
    out_of_order: Mapped[bool | None] = mapped_column(Boolean)  # began after a later one


class CommentRecord(Base):
    """A normalized comment event, kept so sessions can find a thread's history."""

    __tablename__ = "comment_events"
    __table_args__ = (
        UniqueConstraint("delivery_pk", name="uq_comment_events_delivery"),
        Index("ix_comment_events_thread", "thread_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_pk: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(16))
    repo: Mapped[str] = mapped_column(String(255))
    thread_key: Mapped[str] = mapped_column(String(400))
    action: Mapped[str] = mapped_column(String(16))
    comment_id: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OutboxItem(Base):
    """One write to a host, stored before it is sent and sent exactly once."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("key", name="uq_outbox_key"),
        Index("ix_outbox_sendable", "status", "next_attempt_at"),
        Index("ix_outbox_thread", "thread_key", "id"),
        Index("ix_outbox_coalesce", "coalesce_key", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))  # idempotency key; also the body's marker
    host: Mapped[str] = mapped_column(String(16))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    repo: Mapped[str] = mapped_column(String(255))
    thread_key: Mapped[str] = mapped_column(String(400))  # writes in one thread go in order
    thread: Mapped[dict[str, Any]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    coalesce_key: Mapped[str | None] = mapped_column(String(200))  # edits of one comment
    version: Mapped[int | None] = mapped_column(Integer)  # which edit is newest
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)  # acknowledgements go first
    # pending -> sending -> sent | failed; pending -> superseded (a newer edit replaced it)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    maybe_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)


class PostedComment(Base):
    """The comment an edited-in-place write (a status comment) lives in."""

    __tablename__ = "posted_comments"

    coalesce_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(16))
    thread_key: Mapped[str] = mapped_column(String(400))
    # None: a version is posting it or may have posted it, and its id is not known yet
    # (look for the marker before posting); see Outbox.posting.
    comment_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(Text)


class TimeSlot(Base):
    """When something may next happen, across all processes: the next write to one
    installation (pacing), the next run of a job that only one process may run."""

    __tablename__ = "time_slots"

    slot_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Installation(Base):
    """A GitHub App installation as its lifecycle events told us."""

    __tablename__ = "installations"

    host: Mapped[str] = mapped_column(String(16), primary_key=True)
    installation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # active | suspended | deleted
    repositories: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


LIVE_STATES = ("active", "busy", "idle", "awaiting_approval")


class SessionRow(Base):
    """An agent session bound to one thread."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("client_request_id", name="uq_sessions_client_request_id"),
        # At most one live session per thread, enforced by the database itself.
        Index(
            "uq_sessions_live_thread",
            "thread_key",
            unique=True,
            sqlite_where=text("state IN ('active', 'busy', 'idle', 'awaiting_approval')"),
            postgresql_where=text("state IN ('active', 'busy', 'idle', 'awaiting_approval')"),
        ),
        Index("ix_sessions_state", "state"),
        Index("ix_sessions_thread", "thread_key"),
        # The timekeeper's questions: who is past a deadline, when is the next one.
        Index("ix_sessions_time_limit", "state", "time_limit_at"),
        Index("ix_sessions_lifetime", "state", "lifetime_at"),
        Index("ix_sessions_idle_deadline", "state", "idle_deadline_at"),
        Index("ix_sessions_parent", "parent_id"),
        Index("ix_sessions_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    client_request_id: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(16))
    repo: Mapped[str] = mapped_column(String(255))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    thread_key: Mapped[str] = mapped_column(String(400))
    thread: Mapped[dict[str, Any]] = mapped_column(JSON)
    agent_id: Mapped[str] = mapped_column(String(64))
    # active -> busy -> idle (or awaiting_approval) -> busy ... ; closed / failed at the end
    state: Mapped[str] = mapped_column(String(24))
    close_reason: Mapped[str | None] = mapped_column(String(32))
    closed_by: Mapped[str | None] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(Text)
    started_by: Mapped[str] = mapped_column(String(255))
    trigger_comment_id: Mapped[str | None] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # session settings as launched
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    time_limit_at: Mapped[datetime] = mapped_column(UtcDateTime)
    idle_deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lifetime_at: Mapped[datetime] = mapped_column(UtcDateTime)
    extended_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    turn_owner: Mapped[str | None] = mapped_column(String(128))
    turn_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON)  # steps and summary from update_status
    output: Mapped[str | None] = mapped_column(Text)
    status_seq: Mapped[int] = mapped_column(Integer, default=0)
    # A delegation's (or chain step's) parent session; None for a session of a thread.
    parent_id: Mapped[str | None] = mapped_column(String(16))
    # The agent as launched (engine, provider, model, runtimeParams, tools): fixed for life.
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    # Of tokens_in: read from / written to a provider's prompt cache (migration 0010).
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # price table, US$ 1e-6
    delegations: Mapped[int] = mapped_column(Integer, default=0)
    # The session of the same thread this one takes up again (ended by the clock).
    resumed_from: Mapped[str | None] = mapped_column(String(16))
    # A request to stop the turn in flight (migration 0016): the runner of the turn sees
    # it within a second, stops the turn, and clears it when the turn is settled.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancel_requested_by: Mapped[str | None] = mapped_column(String(255))


class SessionInput(Base):
    """Something for the agent: the task, a comment in the thread, an operator's message."""

    __tablename__ = "session_inputs"
    __table_args__ = (
        Index("ix_session_inputs_queue", "session_id", "status", "id"),
        Index("ix_session_inputs_waiting", "status", "session_id"),
        Index("ix_session_inputs_comment", "comment_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # task | comment | operator
    author: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    comment_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # queued | consumed | withdrawn
    turn: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    amended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # runtimeParams for the one turn that reads this input (an API prompt's), camelCase.
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class TranscriptEvent(Base):
    """One event of a session, in order: inputs, messages, tool calls, state changes, writes."""

    __tablename__ = "transcript_events"
    __table_args__ = (Index("ix_transcript_session", "session_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The words worth finding (inputs, messages, replies, results), full-text indexed by
    # migration 0004: FTS5 on SQLite, a GIN tsvector index on PostgreSQL.
    search_text: Mapped[str | None] = mapped_column(Text)


class AgentMemory(Base):
    """A note an agent keeps for one repository, across its sessions (memory_write)."""

    __tablename__ = "agent_memory"
    __table_args__ = (
        UniqueConstraint("host", "repo", "agent_id", "key", name="uq_agent_memory_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(16))
    repo: Mapped[str] = mapped_column(String(255))
    agent_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(Text)
    session_id: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RepoConfig(Base):
    """The last valid repository configuration file; kept in force while a newer one is invalid."""

    __tablename__ = "repo_configs"

    host: Mapped[str] = mapped_column(String(16), primary_key=True)
    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    path: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime] = mapped_column(UtcDateTime)


# ---------------------------------------------------------------- the playground host
# The `local` host's own data (bot/hosts/local_store.py): a repository with one pull
# request, its people, comments, review threads, reactions and reviews, kept in our
# database instead of on GitHub or GitLab. Only used when THREADLINE_PLAYGROUND is on.


class PlaygroundMeta(Base):
    """Small facts of the playground, such as its generated webhook secret."""

    __tablename__ = "playground_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class PlaygroundUser(Base):
    """A person (or the bot) of the playground, with their permission on its repositories."""

    __tablename__ = "playground_users"

    login: Mapped[str] = mapped_column(String(255), primary_key=True)
    permission: Mapped[str] = mapped_column(String(16))  # GitHub's words: write, read, ...
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)


class PlaygroundRepo(Base):
    __tablename__ = "playground_repos"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # owner/name
    description: Mapped[str] = mapped_column(Text)
    default_branch: Mapped[str] = mapped_column(String(255))


class PlaygroundFile(Base):
    """One file of a repository at one commit (what read_file serves)."""

    __tablename__ = "playground_files"

    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(400), primary_key=True)
    content: Mapped[str] = mapped_column(Text)


class PlaygroundPull(Base):
    """A pull request: its title, branches, commits and unified diff."""

    __tablename__ = "playground_pulls"
    __table_args__ = (UniqueConstraint("repo", "number", name="uq_playground_pulls_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(255))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(255))
    base_ref: Mapped[str] = mapped_column(String(255))
    head_ref: Mapped[str] = mapped_column(String(255))
    base_sha: Mapped[str] = mapped_column(String(64))
    head_sha: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # open | closed | merged
    diff: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PlaygroundReviewThread(Base):
    """A review thread on one line of a pull request's diff."""

    __tablename__ = "playground_review_threads"
    __table_args__ = (Index("ix_playground_review_threads_pull", "repo", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(255))
    number: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(400))
    line: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8))  # RIGHT (new file) | LEFT (old file)
    commit_sha: Mapped[str] = mapped_column(String(64))
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PlaygroundComment(Base):
    """A comment in a pull request's conversation, or in one of its review threads."""

    __tablename__ = "playground_comments"
    __table_args__ = (
        Index("ix_playground_comments_pull", "repo", "number", "id"),
        Index("ix_playground_comments_thread", "thread_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(255))
    number: Mapped[int] = mapped_column(Integer)
    thread_id: Mapped[int | None] = mapped_column(
        ForeignKey("playground_review_threads.id", ondelete="CASCADE")
    )
    in_reply_to: Mapped[int | None] = mapped_column(BigInteger)
    author: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    edited_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class PlaygroundReaction(Base):
    __tablename__ = "playground_reactions"
    __table_args__ = (
        UniqueConstraint("comment_id", "login", "content", name="uq_playground_reactions"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    comment_id: Mapped[int] = mapped_column(
        ForeignKey("playground_comments.id", ondelete="CASCADE")
    )
    login: Mapped[str] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(String(32))  # eyes, +1, rocket, ...
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PlaygroundReview(Base):
    """A review: an approval, a request for changes, or the bot's review comments."""

    __tablename__ = "playground_reviews"
    __table_args__ = (Index("ix_playground_reviews_pull", "repo", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(255))
    number: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))  # approved | changes_requested | commented
    body: Mapped[str] = mapped_column(Text)
    commit_sha: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PlaygroundCommit(Base):
    """A commit of a playground repository: its parent and message. Its files are the
    playground_files rows under its sha."""

    __tablename__ = "playground_commits"

    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_sha: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PlaygroundBranch(Base):
    """A branch of a playground repository and the commit it points at."""

    __tablename__ = "playground_branches"

    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha: Mapped[str] = mapped_column(String(64))


class PlaygroundCommitState(Base):
    """A commit status the bot set (the playground's check runs)."""

    __tablename__ = "playground_commit_states"

    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChangeSet(Base):
    """Files an agent proposed (`propose_change`), and what became of them."""

    __tablename__ = "change_sets"
    __table_args__ = (Index("ix_change_sets_session", "session_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    # [{"path", "content"|None, and its diffstat: "change", "added", "removed"}]
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    base_branch: Mapped[str] = mapped_column(String(255))
    base_sha: Mapped[str] = mapped_column(String(64))
    # proposed -> applied | conflict | failed | rejected | stale
    status: Mapped[str] = mapped_column(String(16))
    branch: Mapped[str | None] = mapped_column(String(255))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    pull_number: Mapped[int | None] = mapped_column(Integer)
    pull_url: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApprovalGate(Base):
    """What a session waits for a maintainer's yes on, and the decision."""

    __tablename__ = "approval_gates"
    __table_args__ = (Index("ix_approval_gates_session", "session_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    change_set_id: Mapped[int | None] = mapped_column(BigId)
    subject: Mapped[str] = mapped_column(Text)
    pinned_sha: Mapped[str | None] = mapped_column(String(64))  # the PR/MR head it was asked on
    # waiting -> approved | changes_requested | stale | cancelled
    status: Mapped[str] = mapped_column(String(24))
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_sha: Mapped[str | None] = mapped_column(String(64))
    decision_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ApiToken(Base):
    """A bearer token for /api/v1 and the inspector, kept as the SHA-256 of the token."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),)

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    scope: Mapped[str] = mapped_column(String(20))  # operator | viewer
    repos: Mapped[list[str] | None] = mapped_column(JSON)  # None: every repository
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ApiAudit(Base):
    """One action taken through the API, with the token that took it."""

    __tablename__ = "api_audit"
    __table_args__ = (Index("ix_api_audit_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    token: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str | None] = mapped_column(String(400))


class DailyUsage(Base):
    """Tokens and cost of one repository's model calls on one UTC day (spending limits)."""

    __tablename__ = "daily_usage"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    host: Mapped[str] = mapped_column(String(16), primary_key=True)
    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)  # input and output
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # US$ 1e-6


class RepoPause(Base):
    """A repository an operator paused: its comments are recorded, nothing starts."""

    __tablename__ = "repo_pauses"

    host: Mapped[str] = mapped_column(String(16), primary_key=True)  # "*": every host
    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    paused_by: Mapped[str] = mapped_column(String(255))
    paused_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Spawn(Base):
    """A sub-agent a session started with `spawn_agent`: its child session and its result.

    A non-blocking spawn's child runs as a session of its own (any process may take its
    turn); when it ends, its result is queued as the parent's input in the same
    transaction that settles this row, so a crash loses neither."""

    __tablename__ = "spawns"
    __table_args__ = (
        UniqueConstraint("parent_id", "number", name="uq_spawns_parent_number"),
        Index("ix_spawns_state", "state", "nonblocking"),
        Index("ix_spawns_child", "child_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    parent_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # the parent's delegation number: task-N
    child_id: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(Text)
    nonblocking: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))  # running -> done | failed | cancelled
    ok: Mapped[bool | None] = mapped_column(Boolean)
    result: Mapped[str | None] = mapped_column(Text)
    active_tools: Mapped[list[str] | None] = mapped_column(JSON)
    tool_choice: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ScheduleFire(Base):
    """One occurrence of a schedule, fired by whichever process inserted this row first."""

    __tablename__ = "schedule_fires"
    __table_args__ = (
        UniqueConstraint("schedule", "due_at", name="uq_schedule_fires_occurrence"),
        Index("ix_schedule_fires_schedule", "schedule", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    schedule: Mapped[str] = mapped_column(String(100))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the cron occurrence
    fired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    runner: Mapped[str] = mapped_column(String(128))  # the process that fired it
    status: Mapped[str] = mapped_column(String(16))  # firing -> launched | failed
    session_id: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
