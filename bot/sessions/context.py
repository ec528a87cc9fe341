"""A session's thread context: read once when the session starts, kept as one `context`
transcript event, and handed to every turn of the session unchanged.

`ContextReader` asks the host adapter (whose calls go through the adapter's own
transport and pacing) for the pull/merge request or issue, its changed files, the
thread's newest comments and, for a review thread, where it sits on the diff. Each read
may fail on its own (404, 403, a rate limit, no credentials): the session starts with
what there is, and the event and the text name what is missing. The changed files and a
review thread's place are cached per head commit, so a second session on the same head
reads only what can have changed (the pull request itself, which names its head, and the
comments). Who has write access is asked through the same cached lookup that commands
use; people it cannot vouch for count as without.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from bot.events import HEADLESS, ThreadRef
from bot.hosts.base import ChangedFile, HostClient, HostError
from bot.hosts.thread import CommentWindow, ReviewAnchor
from bot.sessions.context_text import ContextLimits, Gathered, render
from bot.sessions.store import SessionInfo

log = logging.getLogger(__name__)

T = TypeVar("T")
CONTEXT = "context"  # the transcript event
CanWrite = Callable[[str, int | None, str, str], Awaitable[bool]]

PULL = "the pull request (title, description, branches)"
ISSUE = "the issue (title, description, labels)"
FILES = "the changed files"
COMMENTS = "the thread's earlier comments"
ANCHOR = "the review thread's file, lines and diff hunk"
ACCESS = "who of the authors has write access (they count as without)"


def why(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    text = str(exc) or type(exc).__name__
    return f"{text} (HTTP {status})" if status and str(status) not in text else text


class ContextReader:
    """Reads threads' context from host adapters; caches what depends on the head only."""

    def __init__(
        self, can_write: CanWrite, limits: ContextLimits | None = None, cache_size: int = 256
    ) -> None:
        self.can_write = can_write
        self.limits = limits or ContextLimits()
        self.cache_size = cache_size
        self._files: OrderedDict[tuple[str, str], Sequence[ChangedFile]] = OrderedDict()
        self._anchors: OrderedDict[tuple[str, str], ReviewAnchor] = OrderedDict()

    def _remember(
        self, cache: OrderedDict[tuple[str, str], Any], key: tuple[str, str], value: Any
    ) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    async def _try(self, gathered: Gathered, what: str, read: Awaitable[T]) -> T | None:
        try:
            return await read
        except HostError as exc:
            gathered.missing.append((what, why(exc)))
        except Exception as exc:  # a host's odd answer must not keep the session from starting
            log.exception("reading %s for a session's context failed", what)
            gathered.missing.append((what, f"{type(exc).__name__}: {exc}"))
        return None

    async def read(self, host: HostClient, session: SessionInfo) -> Gathered:
        thread = session.thread
        conversation = thread.conversation
        gathered = Gathered(host=thread.host)
        if thread.target == "pull":
            gathered.pull = await self._try(gathered, PULL, host.pull_details(conversation))
            head = gathered.pull.head_sha if gathered.pull is not None else ""
            gathered.files = await self._cached(
                gathered,
                self._files,
                (conversation.key, head),
                FILES,
                host.changed_files,
                conversation,
            )
            if thread.thread_id is not None:
                gathered.anchor = await self._cached(
                    gathered, self._anchors, (thread.key, head), ANCHOR, host.review_anchor, thread
                )
        else:
            gathered.issue = await self._try(gathered, ISSUE, host.issue_details(conversation))
        window = await self._try(
            gathered, COMMENTS, host.thread_comments(thread, newest=self.limits.read_comments)
        )
        if window is not None:
            gathered.comments = _before_trigger(window, session.trigger_comment_id)
        gathered.writers = await self._writers(gathered, session)
        return gathered

    async def _cached(
        self,
        gathered: Gathered,
        cache: OrderedDict[tuple[str, str], Any],
        key: tuple[str, str],
        what: str,
        read: Callable[[ThreadRef], Awaitable[Any]],
        thread: ThreadRef,
    ) -> Any:
        if key[1] and key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = await self._try(gathered, what, read(thread))
        if value is not None and key[1]:  # no head known: nothing to key it by
            self._remember(cache, key, value)
        return value

    async def _writers(self, gathered: Gathered, session: SessionInfo) -> dict[str, bool]:
        """Write access of the authors shown (the newest comments' first), asked at most
        `authors_checked` times; anyone not asked, or whom the host would not say, counts
        as without."""
        authors: list[str] = []
        for details in (gathered.pull, gathered.issue):
            if details is not None and details.author:
                authors.append(details.author)
        if gathered.comments is not None:
            authors += [c.author for c in reversed(gathered.comments.comments) if not c.ours]
        writers: dict[str, bool] = {}
        failed = False
        thread = session.thread
        for login in authors:
            key = login.lower()
            if not login or key in writers:
                continue
            if len(writers) >= self.limits.authors_checked:
                writers[key] = False
                continue
            try:
                writers[key] = await self.can_write(
                    thread.host, session.installation_id, thread.repo, login
                )
            except HostError:
                writers[key] = False
                failed = True
        if failed:
            gathered.missing.append((ACCESS, "the host would not say for some of them"))
        return writers


def _before_trigger(window: CommentWindow, trigger: str | None) -> CommentWindow:
    """The comments before the one that started the session (it is the task; later ones
    reach the session as its input)."""
    ids = [c.id for c in window.comments]
    if trigger is None or trigger not in ids:
        return window
    cut = ids.index(trigger)
    dropped = len(ids) - cut
    total = None if window.total is None else max(0, window.total - dropped)
    return CommentWindow(window.comments[:cut], total)


class ContextStore(Protocol):
    def last_event(self, session_id: str, kind: str) -> dict[str, Any] | None: ...


async def context_for(
    session: SessionInfo,
    *,
    store: ContextStore,
    reader: ContextReader,
    host_for: Callable[[SessionInfo], HostClient] | None,
    note: Callable[[SessionInfo, str, dict[str, Any]], Awaitable[None]],
) -> str:
    """The session's context text: the one its `context` event holds, or read now (and
    recorded) when it has none. A delegation, a headless session and a runtime without
    hosts have none."""
    if session.parent_id is not None or session.thread.host == HEADLESS or host_for is None:
        return ""
    recorded = await asyncio.to_thread(store.last_event, session.id, CONTEXT)
    if recorded is not None:
        return str(recorded.get("text") or "")
    gathered: Gathered | None = None
    try:
        host = host_for(session)
    except HostError as exc:
        gathered = Gathered(host=session.thread.host, missing=[("everything", why(exc))])
    if gathered is None:
        gathered = await reader.read(host, session)
    text, summary = render(gathered, session.thread.number, reader.limits)
    await note(session, CONTEXT, {"thread": session.thread.key, **summary, "text": text})
    return text
