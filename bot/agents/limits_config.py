"""`limits:` and `status:` in the server's `threadline.yml`: daily spending limits and
what the status comment shows.

    limits:
      repositoryPerDay: {tokens: 2000000, maxCostUsd: 20}    # each repository, per UTC day
      installationPerDay: {tokens: 10000000, maxCostUsd: 100} # every repository together
      repositories:                                           # one repository's own day
        octo/big-app: {maxCostUsd: 50}
    status:
      showCost: true      # the session's cost in its status comment (default: false)

Tokens are input and output tokens of every model call; cost is the price table's, in
micro-dollars. Only the server's file has these keys: a repository's file cannot set them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bot.agents import yamlcheck as y
from bot.agents.models import MILLION

LIMITS_KEYS = ("repositoryPerDay", "installationPerDay", "repositories")
DAY_KEYS = ("tokens", "maxCostUsd")
STATUS_KEYS = ("showCost",)
REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")

BAD_COST = "expected a positive number of US dollars, got {got}"
BAD_REPO = "expected OWNER/REPO (a GitLab group path may have more parts), got {got}"
EMPTY_DAY = "give tokens, maxCostUsd or both"


@dataclass(frozen=True)
class DailyLimit:
    """What may be spent in one UTC day; None: no limit of that kind."""

    tokens: int | None = None
    cost_micros: int | None = None

    @property
    def set(self) -> bool:
        return self.tokens is not None or self.cost_micros is not None


@dataclass(frozen=True)
class Limits:
    """`limits:`: per repository per day (one default, some repositories their own) and
    for the whole installation per day."""

    repository: DailyLimit = field(default_factory=DailyLimit)
    installation: DailyLimit = field(default_factory=DailyLimit)
    repositories: Mapping[str, DailyLimit] = field(default_factory=dict)

    def for_repo(self, repo: str) -> DailyLimit:
        """The daily limit of `repo` (its own, else the default one)."""
        return self.repositories.get(repo.lower(), self.repository)

    @property
    def any(self) -> bool:
        return (
            self.repository.set
            or self.installation.set
            or any(one.set for one in self.repositories.values())
        )


@dataclass(frozen=True)
class StatusSettings:
    """`status:`: what a session's status comment shows beyond its state."""

    show_cost: bool = False


def _day(report: y.Report, raw: object, path: y.KeyPath) -> DailyLimit:
    found = y.mapping(report, raw, path, DAY_KEYS)
    tokens = y.count(report, found["tokens"], (*path, "tokens")) if "tokens" in found else None
    cost = None
    if "maxCostUsd" in found:
        value = y.number(found["maxCostUsd"])
        if value is None or value <= 0 or not math.isfinite(value):
            report.add((*path, "maxCostUsd"), BAD_COST.format(got=y.shown(found["maxCostUsd"])))
        else:
            cost = round(value * MILLION)
    if isinstance(raw, dict) and not found and not raw:
        report.add(path, EMPTY_DAY)
    return DailyLimit(tokens=tokens, cost_micros=cost)


def limits(report: y.Report, raw: object, path: y.KeyPath) -> Limits:
    """Check `limits:`; every problem goes into `report` with its line."""
    found = y.mapping(report, raw, path, LIMITS_KEYS)
    repository = DailyLimit()
    installation = DailyLimit()
    if "repositoryPerDay" in found:
        repository = _day(report, found["repositoryPerDay"], (*path, "repositoryPerDay"))
    if "installationPerDay" in found:
        installation = _day(report, found["installationPerDay"], (*path, "installationPerDay"))
    own: dict[str, DailyLimit] = {}
    if "repositories" in found:
        where = (*path, "repositories")
        expected = y.NOT_A_MAPPING.format(keys="OWNER/REPO names", got="{got}")
        for name, body, at in y.named(
            report, found["repositories"], where, REPO_NAME, expected=expected, bad_name=BAD_REPO
        ):
            own[name.lower()] = _day(report, body, at)
    return Limits(repository, installation, MappingProxyType(own))


def status_settings(report: y.Report, raw: object, path: y.KeyPath) -> StatusSettings:
    found = y.mapping(report, raw, path, STATUS_KEYS)
    show = y.flag(report, found["showCost"], (*path, "showCost")) if "showCost" in found else None
    return StatusSettings(show_cost=bool(show))
