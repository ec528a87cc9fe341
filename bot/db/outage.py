"""Trouble reaching the database, told the same way everywhere: in words that are safe
to show anyone (`database_trouble`) and, for background loops, without a traceback per
poll (`Outage`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import exc as sa_exc

# What a failed ping says, in words that are safe to show an unauthenticated caller:
# the driver's own message can name hosts, users and paths, so only these phrases
# (libpq's and SQLite's wording, lower-cased) are passed on.
_DATABASE_TROUBLES = (
    ("connection refused", "connection refused"),
    ("the database system is starting up", "starting up"),
    ("the database system is shutting down", "shutting down"),
    ("the database system is in recovery mode", "in recovery"),
    ("terminating connection due to administrator command", "connection ended by the server"),
    ("server closed the connection unexpectedly", "connection ended by the server"),
    ("timeout expired", "connect timeout"),
    ("too many clients", "too many connections"),
    ("password authentication failed", "authentication failed"),
    ("does not exist", "database or schema does not exist"),
    ("unable to open database file", "cannot open the database file"),
    ("database is locked", "locked"),
)

REPEAT_SECONDS = 30.0  # while the database stays unreachable, a loop says so this often


def database_trouble(exc: BaseException) -> str:
    """`unreachable: <why>` for a failed database call, without the driver's details."""
    if isinstance(exc, TimeoutError):
        return "unreachable: no answer within 5 s"
    text = str(exc).lower()
    for phrase, why in _DATABASE_TROUBLES:
        if phrase in text:
            return f"unreachable: {why} ({type(exc).__name__})"
    return f"unreachable: {type(exc).__name__}"


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached (rather than a bug)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)
    )


class Outage:
    """How a background loop (`what`, e.g. "worker w-1") logs failures of its polls.

    The database becoming unreachable is one warning, then at most one line every
    `repeat_seconds` while it stays so, and one info line when a poll succeeds again;
    never the driver's message (it names host and user). Any other failure is logged
    with its traceback, as a bug would be.
    """

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        repeat_seconds: float = REPEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.what = what
        self.repeat_seconds = repeat_seconds
        self.clock = clock
        self.since: float | None = None  # when the database became unreachable
        self.said = 0.0  # when that was last logged

    def failed(self, exc: BaseException, doing: str) -> None:
        """A poll failed while `doing` (e.g. "claim deliveries")."""
        if not is_unreachable(exc):
            self.log.error("%s could not %s", self.what, doing, exc_info=exc)
            return
        now = self.clock()
        trouble = database_trouble(exc)
        if self.since is None:
            self.since = self.said = now
            self.log.warning(
                "%s could not %s: database %s; trying again until it is back",
                self.what,
                doing,
                trouble,
            )
        elif now - self.said >= self.repeat_seconds:
            self.said = now
            self.log.warning(
                "%s: database still %s (for %.0f s)", self.what, trouble, now - self.since
            )

    def ok(self) -> None:
        """A poll reached the database."""
        if self.since is not None:
            self.log.info(
                "%s: database reachable again after %.0f s", self.what, self.clock() - self.since
            )
            self.since = None
