"""Prebuilt Core statements run straight on the driver's cursor, for the hottest paths.

SQLAlchemy's execution path (cache key, compiled-cache lookup, execution context,
events, parameter processing, the result object) cost 40-80 us of CPU for a statement
that SQLite runs in 3-15 us (bench/README.md, session 11): on a worker or a session
turn, most of the CPU went there, not into the database. A `Lean` statement is
compiled once per dialect into its SQL text, the order of its parameters and the
converters of its column types (SQLAlchemy's own, so values are stored and read back
exactly as through `Connection.execute`), and then runs on the cursor of the
connection it is given, inside that connection's transaction.

What it keeps from the long path: the in-process write turn on SQLite
(`bot.db.writers`), errors raised as SQLAlchemy's exceptions with the connection
invalidated when the database went away (the pool then drops it), and a hook for
`bench/sql_count.py`. What it does not support, checked when it compiles: Python-side
column defaults (a statement must give those values itself) and IN lists whose length
varies between calls.
"""

from __future__ import annotations

import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, bindparam
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from bot.db.types import UtcDateTime, sqlite_text
from bot.db.writers import WriteTurns, writes

# Set by bench/sql_count.py to count these statements too: called with the SQL text.
OBSERVER: Callable[[str], None] | None = None

# The write turns of each SQLite engine, by the engine's dialect (see writers.py).
_TURNS: weakref.WeakKeyDictionary[Any, WriteTurns] = weakref.WeakKeyDictionary()


def register_turns(engine: Engine, turns: WriteTurns) -> None:
    _TURNS[engine.dialect] = turns


@dataclass
class _Plan:
    sql: str
    names: tuple[str, ...]  # the caller's parameter for each placeholder, in order
    positional: bool
    constants: Mapping[str, Any]  # values built into the statement, converted once
    converters: Mapping[str, Callable[[Any], Any]]  # for the caller's parameters
    types: tuple[Any, ...]  # of the result columns
    # Their converters, worked out at the first run: some depend on the type the driver
    # reports (numbers on PostgreSQL).
    results: tuple[Callable[[Any], Any] | None, ...] | None
    row: type | None  # a named tuple of the result columns
    writes: bool
    dialect: Any


class Lean:
    """One Core statement (built once, at import) run the short way; see the module."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._plans: dict[tuple[type, str], _Plan] = {}
        self._lock = threading.Lock()

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Run it and return its rows (named tuples: `row.column` as with Core rows)."""
        plan, cursor = self._run(conn, params or {})
        try:
            return _convert(plan, cursor, cursor.fetchall())
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """The first row, or None."""
        plan, cursor = self._run(conn, params or {})
        try:
            fetched = cursor.fetchone()
            return None if fetched is None else _convert(plan, cursor, [fetched])[0]
        finally:
            cursor.close()

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def count(self, conn: Connection, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        _plan, cursor = self._run(conn, params or {})
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Run it once for each set of parameters (no rows are read)."""
        self.counts(conn, params)

    def counts(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> list[int]:
        """Run a statement that returns no rows once for each set of parameters; how
        many rows each run changed. On PostgreSQL the runs go to the server together
        (psycopg's executemany, pipelined: one round trip where there were one per
        run); SQLite runs them one by one in this process, which costs no round trip."""
        if not params:
            return []
        plan = self._plan(conn)
        if plan.dialect.name == "sqlite":
            return [self.count(conn, one) for one in params]
        args = [self._args(plan, one) for one in params]
        driver = conn.connection.dbapi_connection
        assert driver is not None
        cursor: Any = driver.cursor()  # psycopg's: executemany takes `returning`
        if OBSERVER is not None:
            for _ in args:
                OBSERVER(plan.sql)
        try:
            cursor.executemany(plan.sql, args, returning=True)
            changed = [int(cursor.rowcount)]
            while cursor.nextset():
                changed.append(int(cursor.rowcount))
            return changed
        except Exception as exc:
            conn._handle_dbapi_exception(exc, plan.sql, args, cursor, None)  # raises
            raise
        finally:
            cursor.close()

    def alone(self, engine: Engine, params: Mapping[str, Any] | None = None) -> int:
        """Run a writing statement as its own transaction (autocommit), as
        `bot.db.execute_alone` does; how many rows it changed."""
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return self.count(conn, params)

    # ------------------------------------------------------------------ inside

    def _plan(self, conn: Connection) -> _Plan:
        key = (type(conn.dialect), conn.dialect.paramstyle)
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key) or _compile(self.statement, conn)
                self._plans[key] = plan
        return plan

    def _args(self, plan: _Plan, params: Mapping[str, Any]) -> Any:
        """The driver's parameters for one run: converted, in the plan's order."""
        values = []
        for name in plan.names:
            if name in plan.constants:
                values.append(plan.constants[name])
                continue
            value = params[name]
            convert = plan.converters.get(name)
            values.append(value if convert is None or value is None else convert(value))
        return tuple(values) if plan.positional else dict(zip(plan.names, values, strict=True))

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Plan, Any]:
        plan = self._plan(conn)
        args = self._args(plan, params)
        driver = conn.connection.dbapi_connection
        assert driver is not None
        turns = _TURNS.get(conn.dialect) if plan.writes else None
        if turns is not None:
            turns.take(driver)
        cursor = driver.cursor()
        if OBSERVER is not None:
            OBSERVER(plan.sql)
        try:
            cursor.execute(plan.sql, args)
        except Exception as exc:
            if turns is not None:
                turns.after_statement(driver)
            cursor.close()
            conn._handle_dbapi_exception(exc, plan.sql, args, cursor, None)  # raises
            raise
        if turns is not None:
            turns.after_statement(driver)
        return plan, cursor


def _compile(statement: ClauseElement, conn: Connection) -> _Plan:
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if compiled.isinsert and not getattr(statement, "_values", None):
        raise ValueError("a Lean INSERT must name its values (bindparams), not take them per call")
    if compiled.insert_prefetch or compiled.update_prefetch:
        raise ValueError("a Lean statement must give its Python-side defaults itself")
    asked = {b.key for b in compiled.binds.values() if b.required}
    for bind in compiled.binds.values():
        if bind.required and (bind.expanding or bind.literal_execute):
            # A list's length, or a value some dialects write into the SQL text (LIMIT
            # on PostgreSQL), would be fixed by the first call: build one per value.
            raise ValueError(f"a Lean statement cannot take {bind.key} per call")
    # Constant IN lists are expanded once; the caller's parameters are placeholders.
    state = compiled.construct_expanded_state({name: None for name in asked})
    # Tuple IN lists (a sequence of converters for one name) are not used here.
    processors = cast(
        "dict[str, Callable[[Any], Any]]", {**compiled._bind_processors, **state.processors}
    )
    if dialect.name == "sqlite":  # timestamps in one step, as SQLAlchemy's two write them
        for name, bind in compiled.binds.items():
            if isinstance(bind.type, UtcDateTime) and name in processors:
                processors[name] = sqlite_text
    if state.positiontup is not None:
        names, positional = tuple(state.positiontup), True
    else:
        names, positional = tuple(state.parameters), False
    constants: dict[str, Any] = {}
    converters: dict[str, Callable[[Any], Any]] = {}
    for name in set(names):
        convert = processors.get(name)
        if name in asked:
            if convert is not None:
                converters[name] = convert
            continue
        value = state.parameters[name]
        constants[name] = convert(value) if convert is not None and value is not None else value
    columns = compiled._result_columns
    row = namedtuple("Row", [col.keyname for col in columns]) if columns else None
    text = state.statement
    return _Plan(
        sql=text,
        names=names,
        positional=positional,
        constants=constants,
        converters=converters,
        types=tuple(col.type for col in columns),
        results=None,
        row=row,
        writes=writes(text),
        dialect=dialect,
    )


def _convert(plan: _Plan, cursor: Any, fetched: Sequence[Any]) -> list[Any]:
    make = plan.row
    assert make is not None, "the statement returns no rows"
    results = plan.results
    if results is None:
        dialect = plan.dialect
        codes = [column[1] for column in cursor.description]
        results = tuple(
            kind._cached_result_processor(dialect, code)
            for kind, code in zip(plan.types, codes, strict=True)
        )
        plan.results = results
    if not any(results):
        return [make(*r) for r in fetched]
    return [
        make(*(v if f is None or v is None else f(v) for f, v in zip(results, r, strict=True)))
        for r in fetched
    ]


def numbered(name: str, size: int) -> list[Any]:
    """Placeholders `name0`, `name1`... for a list of `size` values: a Lean statement
    takes no list per call, so build one statement per size (they are few)."""
    return [bindparam(f"{name}{n}") for n in range(size)]


def numbered_params(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters of `numbered(name, len(values))`."""
    return {f"{name}{n}": value for n, value in enumerate(values)}


@dataclass(frozen=True)
class LeanRun:
    """One run of a Lean statement with its parameters, to do later on a connection
    (a write that waits for a settle, say); `run_all` sends the consecutive runs of one
    statement together."""

    statement: Lean
    params: Mapping[str, Any]

    def __call__(self, conn: Connection) -> int:
        """Run it in `conn`'s transaction; how many rows it changed."""
        return self.statement.count(conn, self.params)

    def alone(self, engine: Engine) -> int:
        """Run it as its own transaction (`Lean.alone`); how many rows it changed."""
        return self.statement.alone(engine, self.params)


def run_each(conn: Connection, runs: Sequence[LeanRun]) -> list[int]:
    """Do independent `runs` on `conn`, the runs of one statement sent together
    (`Lean.counts`: one round trip on PostgreSQL); rows changed by each, in their order."""
    changed = [0] * len(runs)
    groups: dict[int, tuple[Lean, list[int]]] = {}
    for index, run in enumerate(runs):
        groups.setdefault(id(run.statement), (run.statement, []))[1].append(index)
    for statement, indexes in groups.values():
        counts = statement.counts(conn, [runs[i].params for i in indexes])
        for index, count in zip(indexes, counts, strict=True):
            changed[index] = count
    return changed


def run_all(conn: Connection, writes: Sequence[Callable[[Connection], Any]]) -> None:
    """Do `writes` in order on `conn`; consecutive `LeanRun`s of one statement go
    together (`Lean.counts`: one round trip on PostgreSQL)."""
    index = 0
    while index < len(writes):
        write = writes[index]
        if not isinstance(write, LeanRun):
            write(conn)
            index += 1
            continue
        end = index + 1
        while (
            end < len(writes)
            and isinstance(writes[end], LeanRun)
            and cast(LeanRun, writes[end]).statement is write.statement
        ):
            end += 1
        write.statement.counts(conn, [cast(LeanRun, w).params for w in writes[index:end]])
        index = end
