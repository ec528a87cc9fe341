"""Run `threadline` with every SQL statement, commit and pool checkout counted (a bench helper).

    .venv/bin/python bench/sessions.py --backends sqlite \
        --threadline ".venv/bin/python bench/sql_count.py"

Counts every statement SQLAlchemy sends (`before_cursor_execute`) every commit and every
pool checkout (a connection handed out) of every engine in the process, by statement text, and writes them as JSON at exit to
$BENCH_SQL_COUNTS (default: sql-counts-<pid>.json in the working directory).
`bench/sql_count.py --show FILE [--per N]` prints the totals and the busiest statements,
divided by N (for example the number of triggers the server handled).
"""

from __future__ import annotations

import atexit
import json
import os
import traceback
from collections import Counter
from typing import Any

from common import launcher_main
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

STATEMENTS: Counter[str] = Counter()
COMMITS = Counter[str]()
SITES: Counter[str] = Counter()
WHERE = os.environ.get("BENCH_SQL_WHERE", "")


def _install() -> None:
    @event.listens_for(Engine, "before_cursor_execute")
    def _stmt(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        key = " ".join(statement.split())[:160]
        STATEMENTS[key] += 1
        if WHERE and key.startswith(WHERE):
            frames = [f for f in traceback.extract_stack() if "/bot/" in f.filename]
            SITES[" <- ".join(f"{f.name}:{f.lineno}" for f in reversed(frames[-4:]))] += 1

    from bot.db import lean  # statements run on the driver's cursor skip the event

    def _lean(statement: str) -> None:
        _stmt(None, None, statement)

    lean.OBSERVER = _lean

    @event.listens_for(Engine, "commit")
    def _commit(conn: Any) -> None:
        COMMITS["commit"] += 1

    @event.listens_for(Pool, "checkout")
    def _checkout(*args: Any) -> None:
        COMMITS["checkout"] += 1

    path = os.environ.get("BENCH_SQL_COUNTS", f"sql-counts-{os.getpid()}.json")

    def _dump() -> None:
        with open(path, "w") as fh:
            json.dump(
                {
                    "commits": COMMITS["commit"],
                    "checkouts": COMMITS["checkout"],
                    "statements": dict(STATEMENTS),
                    "sites": dict(SITES),
                },
                fh,
            )

    atexit.register(_dump)


def _show(path: str, per: float) -> None:
    with open(path) as fh:
        data = json.load(fh)
    stmts = Counter(data["statements"])
    total = sum(stmts.values())
    print(
        f"statements {total} ({total / per:.1f} per), commits {data['commits']}"
        f" ({data['commits'] / per:.1f} per), pool checkouts {data.get('checkouts', 0)}"
        f" ({data.get('checkouts', 0) / per:.1f} per)"
    )
    for text, n in stmts.most_common(40):
        print(f"{n / per:7.2f}  {text}")
    for site, n in Counter(data.get("sites", {})).most_common(20):
        print(f"{n / per:7.2f}  {site}")


if __name__ == "__main__":
    launcher_main(_install, _show)
