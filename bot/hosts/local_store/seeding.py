"""Seeding the playground: its repository, users, pull request and webhook secret."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import (
    PlaygroundBranch,
    PlaygroundCommit,
    PlaygroundFile,
    PlaygroundMeta,
    PlaygroundPull,
    PlaygroundRepo,
    PlaygroundUser,
)
from bot.diffs import unified_diff
from bot.hosts.local_objects import commit_id
from bot.hosts.local_seed import (
    BASE_FILES,
    BASE_MESSAGE,
    DEMO_BODY,
    DEMO_PULL,
    DEMO_REPO,
    DEMO_TITLE,
    HEAD_FILES,
    OUTSIDER,
    PEOPLE,
)
from bot.hosts.local_store.core import StoreCore
from bot.hosts.local_store.rows import HEAD_BRANCH, SECRET_META_KEY


class Seeding(StoreCore):
    """prepare(): the playground's seed, settled once."""

    # -------------------------------------------------------------- seeding

    def prepare(self, bot_login: str, secret: str | None = None) -> str:
        """Seed what is missing and return the webhook secret in force.

        Safe to run at every start and from several processes at once: each row is
        inserted only if absent. A configured `secret` wins; otherwise the one generated
        on the first start is kept.
        """
        now = self.clock()
        base_sha = commit_id(BASE_FILES, parent=None, message=BASE_MESSAGE, author=OUTSIDER)
        head_sha = commit_id(HEAD_FILES, parent=base_sha, message=DEMO_TITLE, author=OUTSIDER)
        with Session(self.engine) as session, session.begin():

            def add(model: type[Any], index: list[str], **values: Any) -> None:
                session.execute(
                    self._insert(model)
                    .values(**values)
                    .on_conflict_do_nothing(index_elements=index)
                )

            for login, permission in PEOPLE:
                add(PlaygroundUser, ["login"], login=login, permission=permission, is_bot=False)
            add(PlaygroundUser, ["login"], login=bot_login, permission="write", is_bot=True)
            add(
                PlaygroundRepo,
                ["name"],
                name=DEMO_REPO,
                description="A tiny repository to try Threadline on",
                default_branch="main",
            )
            for sha, files in ((base_sha, BASE_FILES), (head_sha, HEAD_FILES)):
                for path, content in files.items():
                    add(
                        PlaygroundFile,
                        ["repo", "sha", "path"],
                        repo=DEMO_REPO,
                        sha=sha,
                        path=path,
                        content=content,
                    )
            for sha, parent, message in (
                (base_sha, None, BASE_MESSAGE),
                (head_sha, base_sha, DEMO_TITLE),
            ):
                add(
                    PlaygroundCommit,
                    ["repo", "sha"],
                    repo=DEMO_REPO,
                    sha=sha,
                    parent_sha=parent,
                    message=message,
                    author=OUTSIDER,
                    created_at=now,
                )
            for name, sha in (("main", base_sha), (HEAD_BRANCH, head_sha)):
                add(PlaygroundBranch, ["repo", "name"], repo=DEMO_REPO, name=name, sha=sha)
            add(
                PlaygroundPull,
                ["repo", "number"],
                repo=DEMO_REPO,
                number=DEMO_PULL,
                title=DEMO_TITLE,
                body=DEMO_BODY,
                author=OUTSIDER,
                base_ref="main",
                head_ref=HEAD_BRANCH,
                base_sha=base_sha,
                head_sha=head_sha,
                state="open",
                diff=unified_diff(BASE_FILES, HEAD_FILES),
                created_at=now,
            )
            if secret is None:
                add(PlaygroundMeta, ["key"], key=SECRET_META_KEY, value=secrets.token_urlsafe(32))
                secret = session.execute(
                    select(PlaygroundMeta.value).where(PlaygroundMeta.key == SECRET_META_KEY)
                ).scalar_one()
        return secret
