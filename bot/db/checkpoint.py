"""SQLite checkpoints off ingress's commit path.

In WAL mode a commit appends pages to the write-ahead log, and every so often the
pages are copied back into the database file (a checkpoint). By default the commit
that takes the log past 1,000 pages does that copy itself, with two fsyncs, before it
returns: on the bench machine one delivery in ~170 then waited 6-15 ms for its answer
instead of ~1 (bench/README.md, "Session 5"). Ingress's writer instead tells a
`Checkpointer` that it wrote, and the checkpointer's thread copies the log back a
moment later on a connection of its own, while the writer goes on committing.

The checkpoints are PASSIVE: they never wait for, or hold up, a writer or a reader.
The writer's own connection still checkpoints by itself once the log reaches
`BACKSTOP_PAGES`, so the log stays bounded even if this thread falls behind or dies.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger(__name__)

# The write-ahead log size (in pages) at which the writer's connection checkpoints by
# itself: 10,000 pages of 4 KB, 40 MB. The checkpointer normally keeps it far below.
BACKSTOP_PAGES = 10_000


def defer_checkpoints(dbapi_connection: Any, *, backstop_pages: int = BACKSTOP_PAGES) -> None:
    """Leave a SQLite connection's checkpoints to a Checkpointer, up to `backstop_pages`."""
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={int(backstop_pages)}")


class Checkpointer:
    """A thread that checkpoints a SQLite database shortly after it is told of writes.

    `written()` is cheap and safe from any thread. Nothing runs while nothing is
    written, so an idle server does not wake for it. On PostgreSQL it does nothing.
    """

    def __init__(self, engine: Engine, *, delay: float = 0.25) -> None:
        self.engine = engine
        self.delay = delay  # how long writes gather before they are copied back
        self.enabled = engine.dialect.name == "sqlite"
        self.checkpoints = 0  # completed checkpoint calls, for tests and diagnostics
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def written(self) -> None:
        """Something was committed: checkpoint within `delay`."""
        self._due.set()

    def stop(self) -> None:
        """Stop the thread (a checkpoint in progress finishes first)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._due.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        connection: Any = None
        try:
            while True:
                self._due.wait()
                if self._stopping.wait(self.delay):
                    return
                self._due.clear()  # a write from now on asks for the next checkpoint
                try:
                    if connection is None:
                        connection = self.engine.raw_connection()
                        connection.detach()  # its own: closing it really closes it
                    connection.dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    self.checkpoints += 1
                except Exception as exc:
                    # The writer's backstop still bounds the log; try again on the next write.
                    log.warning("checkpointing the SQLite database failed: %s", exc)
                    if connection is not None:
                        connection.invalidate()
                        connection = None
        finally:
            if connection is not None:
                connection.close()
