"""GitLab payload shapes: small pure helpers between GitLab's JSON and bot.hosts.base values."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.events import ThreadRef
from bot.hosts.base import (
    HostError,
    Opened,
)

log = logging.getLogger(__name__)


def _commit_id(branch: Mapping[str, Any], what: str) -> str:
    commit = branch.get("commit")
    sha = commit.get("id") if isinstance(commit, Mapping) else None
    if not isinstance(sha, str) or not sha:
        raise HostError(f"GitLab answered {what} without its commit")
    return sha


def _opened(mr: Mapping[str, Any], *, ambiguous: bool) -> Opened:
    """`ambiguous`: the merge request was just created, so a malformed answer leaves it there."""
    iid = mr.get("iid")
    if not isinstance(iid, int):
        raise HostError("GitLab answered a merge request without its iid", ambiguous=ambiguous)
    url = mr.get("web_url")
    return Opened(number=iid, url=url if isinstance(url, str) else None)


def _require_pull(thread: ThreadRef, what: str) -> None:
    if thread.target != "pull":
        raise HostError(f"cannot {what} on an issue: it needs a merge request")


def _diff_refs(mr: Mapping[str, Any]) -> dict[str, str]:
    refs = mr.get("diff_refs")
    if not isinstance(refs, Mapping) or not all(
        refs.get(k) for k in ("base_sha", "start_sha", "head_sha")
    ):
        # GitLab fills diff_refs once it has computed the first diff of a new MR.
        raise HostError("GitLab has not computed the merge request's diff yet", retryable=True)
    return {k: str(refs[k]) for k in ("base_sha", "start_sha", "head_sha")}


def _file_of(files: list[dict[str, Any]], path: str) -> dict[str, Any]:
    for diff_file in files:
        if diff_file.get("new_path") == path:
            return diff_file
    for diff_file in files:
        if diff_file.get("old_path") == path:
            return diff_file
    raise HostError(f"{path} is not changed in this merge request; cannot comment on its lines")


def _json(answer: object) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise HostError(f"GitLab answered with {type(answer).__name__} where JSON was expected")
    return answer


def _from_fork(mr: Mapping[str, Any]) -> bool | None:
    """A merge request from another project (a fork) has a different source project.
    https://docs.gitlab.com/ee/api/merge_requests.html#get-single-mr"""
    source, target = mr.get("source_project_id"), mr.get("target_project_id")
    if source is None or target is None:
        return None
    return bool(source != target)
