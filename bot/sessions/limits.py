"""Holds on new work: paused repositories and daily spending limits (blocking SQL).

A repository is *held* when an operator paused it (`threadline repos pause`) or when it,
or the whole installation, spent its daily limit (`limits:` in `threadline.yml`). A held
repository starts no session, and its live sessions start no turn: a turn running when
the hold begins finishes, then the session waits with its input queued until the hold
ends (resume, the next UTC day, or a higher limit in the configuration).

The day is the UTC calendar day. Each model call's tokens (input and output) and cost
(the price table's, in micro-dollars) are added to its repository's row for the day
(`daily_usage`) in the same transaction that adds them to the session.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, Engine, delete, false, func, or_, select
from sqlalchemy.orm import Session

from bot.agents.limits_config import REPO_NAME, DailyLimit, Limits
from bot.agents.models import usd
from bot.clock import utcnow
from bot.db import insert_ignoring_conflicts
from bot.db.lean import Lean
from bot.db.models import DailyUsage, RepoPause

ANY_HOST = "*"

PAUSED = (
    "Threadline is paused in `{repo}` by an operator: comments here are recorded, but no "
    "session starts or takes a turn until it is resumed."
)
REPO_LIMIT = (
    "`{repo}` has spent its daily Threadline limit ({spent}): no session starts or takes "
    "a turn here until the limit resets at 00:00 UTC (in {left}), or an operator raises it. "
    "This comment is recorded."
)
INSTALLATION_LIMIT = (
    "Threadline has spent its daily limit for all repositories ({spent}): no session "
    "starts or takes a turn until the limit resets at 00:00 UTC (in {left}), or an "
    "operator raises it. This comment is recorded."
)


HOSTS = ("github", "gitlab", "local")
BAD_NAME = (
    "threadline: {name!r} is not a repository: give OWNER/REPO (every host) or "
    "HOST:OWNER/REPO with HOST one of github, gitlab, local"
)


_PAUSES = Lean(
    select(RepoPause.host, RepoPause.repo, RepoPause.paused_by, RepoPause.paused_at).order_by(
        RepoPause.repo, RepoPause.host
    )
)


def parse_repo(text: str) -> tuple[str | None, str] | None:
    """`OWNER/REPO` (every host) or `HOST:OWNER/REPO`; None if it is neither."""
    host, _, name = text.rpartition(":")
    if host and host not in HOSTS:
        return None
    if not REPO_NAME.fullmatch(name):
        return None
    return host or None, name


def day_of(moment: datetime) -> str:
    """The UTC day of `moment` as YYYY-MM-DD (what a daily limit counts by)."""
    return moment.date().isoformat()


def next_reset(moment: datetime) -> datetime:
    """The next midnight UTC after `moment`: when the day's counts start again."""
    return datetime.combine(moment.date() + timedelta(days=1), time(), tzinfo=moment.tzinfo)


@dataclass(frozen=True)
class Hold:
    """Why new work in a repository waits; `window` names the hold's span (the day, or the
    pause), so the thread is told once per span."""

    kind: Literal["paused", "repository", "installation"]
    window: str
    text: str

    def reply_key(self, thread_key: str) -> str:
        """The outbox key of the one reply about this hold in a thread."""
        digest = hashlib.sha256(thread_key.encode()).hexdigest()[:16]
        return f"held.{self.kind}.{self.window}.{digest}"


@dataclass(frozen=True)
class Held:
    """Every hold in force now: on everything (the installation's limit), or by repository."""

    everything: Hold | None = None
    repos: dict[tuple[str, str], Hold] = field(default_factory=dict)

    def for_repo(self, host: str, repo: str) -> Hold | None:
        return (
            self.everything
            or self.repos.get((host, repo.lower()))
            or self.repos.get((ANY_HOST, repo.lower()))
        )

    @property
    def none(self) -> bool:
        return self.everything is None and not self.repos


@dataclass(frozen=True)
class Pause:
    host: str  # "*": every host
    repo: str
    paused_by: str
    paused_at: datetime


@dataclass(frozen=True)
class DayUsage:
    host: str
    repo: str
    tokens: int
    cost_micros: int


def count_usage(session: Session, day: str, host: str, repo: str, tokens: int, cost: int) -> None:
    """Add one model call to its repository's day, in the caller's transaction."""
    bind = session.get_bind()
    insert = insert_ignoring_conflicts(bind)  # type: ignore[arg-type]
    statement = insert(DailyUsage).values(
        day=day, host=host, repo=repo.lower(), tokens=tokens, cost_micros=cost
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["day", "host", "repo"],
            set_={
                "tokens": DailyUsage.tokens + statement.excluded.tokens,
                "cost_micros": DailyUsage.cost_micros + statement.excluded.cost_micros,
            },
        )
    )


def _spent(tokens: int, cost: int, limit: DailyLimit) -> str | None:
    """What of `limit` is spent, in words, or None while there is room."""
    if limit.tokens is not None and tokens >= limit.tokens:
        return f"{tokens} of {limit.tokens} tokens"
    if limit.cost_micros is not None and cost >= limit.cost_micros:
        return f"US$ {usd(cost)} of US$ {usd(limit.cost_micros)}"
    return None


def _near_a_limit(limits: Limits) -> ColumnElement[bool]:
    """Rows at or past the lowest repository limit of each kind: only those can be
    held, so the others are not read."""
    days = [limits.repository, *limits.repositories.values()]
    tokens = [d.tokens for d in days if d.tokens is not None]
    costs = [d.cost_micros for d in days if d.cost_micros is not None]
    near: list[ColumnElement[bool]] = []
    if tokens:
        near.append(DailyUsage.tokens >= min(tokens))
    if costs:
        near.append(DailyUsage.cost_micros >= min(costs))
    return or_(*near) if near else false()


def _left(now: datetime) -> str:
    minutes = max(1, int((next_reset(now) - now).total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


class Holds:
    """Paused repositories and the day's spending, against the configured limits."""

    def __init__(
        self,
        engine: Engine,
        limits: Limits | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.limits = limits or Limits()
        self.clock = clock

    # ------------------------------------------------------------------ pausing

    def pause(self, host: str | None, repo: str, by: str) -> bool:
        """Pause `repo` (on `host`, or on every host); False if it was paused already."""
        insert = insert_ignoring_conflicts(self.engine)
        with Session(self.engine) as session, session.begin():
            done = session.execute(
                insert(RepoPause)
                .values(
                    host=host or ANY_HOST, repo=repo.lower(), paused_by=by, paused_at=self.clock()
                )
                .on_conflict_do_nothing(index_elements=["host", "repo"])
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def resume(self, host: str | None, repo: str) -> bool:
        """Lift the pause of `repo` (on `host`, or the every-host one); False if none."""
        with Session(self.engine) as session, session.begin():
            done = session.execute(
                delete(RepoPause).where(
                    RepoPause.host == (host or ANY_HOST), RepoPause.repo == repo.lower()
                )
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def pauses(self) -> list[Pause]:
        # Asked before every turn is claimed: a prebuilt statement, run the short way.
        with self.engine.connect() as conn:
            return [Pause(*row) for row in _PAUSES.rows(conn)]

    # ------------------------------------------------------------------ spending

    def today(self) -> list[DayUsage]:
        """Each repository's spending today (UTC), the biggest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(DailyUsage)
                .where(DailyUsage.day == day_of(self.clock()))
                .order_by(DailyUsage.cost_micros.desc(), DailyUsage.tokens.desc(), DailyUsage.repo)
            ).scalars()
            return [DayUsage(r.host, r.repo, r.tokens, r.cost_micros) for r in rows]

    # ------------------------------------------------------------------ holding

    def held(self) -> Held:
        """Every hold in force now (one or two small queries)."""
        now = self.clock()
        repos: dict[tuple[str, str], Hold] = {}
        for pause in self.pauses():
            window = pause.paused_at.strftime("%Y%m%d%H%M%S")
            repos[(pause.host, pause.repo)] = Hold("paused", window, PAUSED.format(repo=pause.repo))
        if not self.limits.any:
            return Held(None, repos)
        day = day_of(now)
        everything = None
        with Session(self.engine) as session:
            total = session.execute(
                select(
                    func.coalesce(func.sum(DailyUsage.tokens), 0),
                    func.coalesce(func.sum(DailyUsage.cost_micros), 0),
                ).where(DailyUsage.day == day)
            ).one()
            spent = _spent(int(total[0]), int(total[1]), self.limits.installation)
            if spent is not None:
                text = INSTALLATION_LIMIT.format(spent=spent, left=_left(now))
                everything = Hold("installation", day, text)
            near = _near_a_limit(self.limits)
            rows = session.execute(
                select(
                    DailyUsage.host, DailyUsage.repo, DailyUsage.tokens, DailyUsage.cost_micros
                ).where(DailyUsage.day == day, near)
            ).all()
            for host, repo, tokens, cost in rows:
                spent = _spent(tokens, cost, self.limits.for_repo(repo))
                if spent is not None and (host, repo) not in repos:
                    text = REPO_LIMIT.format(repo=repo, spent=spent, left=_left(now))
                    repos[(host, repo)] = Hold("repository", day, text)
        return Held(everything, repos)

    def for_claims(self) -> Held | None:
        """What a turn claim must leave waiting beyond the pauses, which the claim asks
        for itself: the spending limits' holds, or None when no limit is set (then
        nothing is read before a claim)."""
        return self.held() if self.limits.any else None

    def hold_for(self, host: str, repo: str) -> Hold | None:
        """Why new work in `repo` must wait now, or None."""
        return self.held().for_repo(host, repo)
