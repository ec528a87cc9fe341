"""Each repository's own configuration file, fetched from the host when a trigger asks
for a session and laid over the server's (it can only narrow it).

The last valid file of each repository is kept in the database: a file that no longer
parses is reported (with its problems, in a reply to the trigger) and the previous
valid one stays in force. A file that is gone means the server's configuration applies.
When the host cannot be reached, the last valid file is used and nothing is reported.
Answers are cached for `ttl` seconds per repository.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from bot.agents.config import Config
from bot.agents.repo_config import REPO_FILES, narrow, parse_repo_config
from bot.agents.yamlcheck import ConfigFileError
from bot.clock import utcnow
from bot.db.models import RepoConfig
from bot.hosts.base import HostError, NotFound

log = logging.getLogger(__name__)

# read(host, installation id, repo, path) -> the file's bytes on the default branch
ReadFile = Callable[[str, int | None, str, str], Awaitable[bytes]]


@dataclass(frozen=True)
class RepoAnswer:
    config: Config  # what applies in this repository now
    path: str  # the file looked for
    problems: tuple[str, ...] = ()  # a newer file that could not be used


class RepoConfigs:
    def __init__(self, engine: Engine, server: Config, read: ReadFile, *, ttl: float = 60.0):
        self.engine = engine
        self.server = server
        self._read = read
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, RepoAnswer]] = {}

    async def for_repo(self, host: str, installation_id: int | None, repo: str) -> RepoAnswer:
        key = (host, repo)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        answer = await self._look(host, installation_id, repo)
        self._cache[key] = (time.monotonic(), answer)
        return answer

    async def _look(self, host: str, installation_id: int | None, repo: str) -> RepoAnswer:
        path = REPO_FILES.get(host, ".threadline.yml")
        try:
            raw = await self._read(host, installation_id, repo, path)
        except NotFound:
            await asyncio.to_thread(self._forget, host, repo)
            return RepoAnswer(self.server, path)
        except HostError as exc:
            log.warning("cannot read %s of %s (%s): the last valid one applies", path, repo, exc)
            return RepoAnswer(await asyncio.to_thread(self._last_valid, host, repo, path), path)
        text = raw.decode("utf-8", errors="replace")
        try:
            policy = parse_repo_config(text, path, self.server)
        except ConfigFileError as exc:
            last = await asyncio.to_thread(self._last_valid, host, repo, path)
            return RepoAnswer(last, path, tuple(exc.problems))
        await asyncio.to_thread(self._keep, host, repo, path, text)
        return RepoAnswer(narrow(self.server, policy), path)

    def _keep(self, host: str, repo: str, path: str, text: str) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(RepoConfig, (host, repo))
            if row is None:
                session.add(
                    RepoConfig(host=host, repo=repo, path=path, text=text, loaded_at=utcnow())
                )
            else:
                row.path, row.text, row.loaded_at = path, text, utcnow()

    def _forget(self, host: str, repo: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                delete(RepoConfig).where(RepoConfig.host == host, RepoConfig.repo == repo)
            )

    def _last_valid(self, host: str, repo: str, path: str) -> Config:
        with Session(self.engine) as session:
            row = session.get(RepoConfig, (host, repo))
            text = None if row is None else row.text
        if text is None:
            return self.server
        try:
            return narrow(self.server, parse_repo_config(text, path, self.server))
        except ConfigFileError:  # the server's file changed under it
            return self.server
