"""Where a session's thread lives on its host, as a link for people (pure functions).

GitHub: the web address is the REST base without its API part (api.github.com ->
github.com; GHES https://HOST/api/v3 -> https://HOST); pull requests live under /pull/,
issues under /issues/, and a review thread is anchored at its first comment
(#discussion_r<id>). GitLab: <base>/<project path>/-/issues/<iid> or
/-/merge_requests/<iid>, with a discussion's notes on that page.
"""

from __future__ import annotations

from urllib.parse import quote

from bot.config import Settings
from bot.events import ThreadRef
from bot.hosts.local_store import pull_url

GITHUB_API = "https://api.github.com"


def github_web_url(api_url: str) -> str:
    base = api_url.rstrip("/")
    if base == GITHUB_API:
        return "https://github.com"
    for suffix in ("/api/v3", "/api"):
        if base.endswith(suffix):
            return base.removesuffix(suffix)
    return base


def _path(repo: str) -> str:
    return "/".join(quote(part, safe="") for part in repo.split("/"))


def thread_url(settings: Settings, thread: ThreadRef) -> str | None:
    """The thread's page on its host, or None for a host without web pages of its own."""
    if thread.host == "github":
        kind = "pull" if thread.target == "pull" else "issues"
        url = (
            f"{github_web_url(settings.github_api_url)}/{_path(thread.repo)}/{kind}/{thread.number}"
        )
        if thread.thread_id and thread.target == "pull" and thread.thread_id.isdigit():
            url += f"#discussion_r{thread.thread_id}"
        return url
    if thread.host == "gitlab":
        kind = "merge_requests" if thread.target == "pull" else "issues"
        return f"{settings.gitlab_url.rstrip('/')}/{_path(thread.repo)}/-/{kind}/{thread.number}"
    if thread.host == "local":  # the playground's own page, on this server
        page = pull_url(thread.number)
        return f"{page}#thread-{thread.thread_id}" if thread.thread_id else page
    return None
