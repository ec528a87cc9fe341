"""Paths an agent's change may not touch unless the server's configuration allows it.

A change to CI configuration runs code with the repository's secrets as soon as a branch
is pushed, and a change to Threadline's own repository file changes what agents may do
there; neither should ride along unnoticed in an approved change set. Each protected path
belongs to a kind; an agent's `allowProtectedPaths` names the kinds it may change
(`true`: all of them). A change touching a kind the agent may not change is refused when
it is proposed and again when it is applied; one it may is flagged in the gate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from bot.agents.base import PROTECTED_CI as CI
from bot.agents.base import PROTECTED_THREADLINE as THREADLINE
from bot.agents.repo_config import REPO_FILES

KINDS: Mapping[str, str] = MappingProxyType(
    {CI: "CI configuration", THREADLINE: "Threadline's repository configuration"}
)

# Directories (a trailing "/") and files, compared case-insensitively: a case-insensitive
# checkout or host may still read `.GitHub/Workflows/`, and refusing too much here only
# costs an explicit allowance.
_CI_PATHS = (
    ".github/workflows/",  # GitHub Actions
    ".github/actions/",  # local composite actions the workflows run
    ".gitlab-ci.yml",
    ".gitlab-ci.yaml",
    ".gitlab/ci/",  # files a .gitlab-ci.yml commonly includes
    ".circleci/",
    "azure-pipelines.yml",
    "azure-pipelines.yaml",
    ".azure-pipelines/",
    ".travis.yml",
    ".buildkite/",
    "bitbucket-pipelines.yml",
    ".drone.yml",
    ".woodpecker.yml",
    ".woodpecker/",
    "appveyor.yml",
    ".appveyor.yml",
    ".cirrus.yml",
    ".buildkite.yml",
    "codefresh.yml",
    ".tekton/",
)
_THREADLINE_PATHS = tuple(sorted({name.lower() for name in REPO_FILES.values()}))


def _matches(path: str, patterns: Iterable[str]) -> bool:
    lowered = path.lower()
    for pattern in patterns:
        if pattern.endswith("/"):
            if lowered.startswith(pattern):
                return True
        elif lowered == pattern:
            return True
    return False


def protected_kind(path: str) -> str | None:
    """The kind of protected path `path` is (`ci`, `threadline`), or None."""
    if _matches(path, _THREADLINE_PATHS):
        return THREADLINE
    name = path.rsplit("/", 1)[-1].lower()
    # Jenkins reads a Jenkinsfile wherever a job points; any directory counts.
    if _matches(path, _CI_PATHS) or name == "jenkinsfile" or name.startswith("jenkinsfile."):
        return CI
    return None


def protected(paths: Iterable[str]) -> dict[str, str]:
    """The protected ones among `paths`, each with its kind."""
    found = {}
    for path in paths:
        kind = protected_kind(path)
        if kind is not None:
            found[path] = kind
    return found


def refused(paths: Iterable[str], allowed: frozenset[str]) -> dict[str, str]:
    """The protected ones among `paths` whose kind is not in `allowed`."""
    return {path: kind for path, kind in protected(paths).items() if kind not in allowed}


def listing(paths: Mapping[str, str]) -> str:
    """`paths` (path -> kind) in words, grouped by kind."""
    return "; ".join(
        f"{KINDS[kind]}: " + ", ".join(p for p, k in sorted(paths.items()) if k == kind)
        for kind in sorted(set(paths.values()))
    )


def refusal(agent_id: str, paths: Mapping[str, str]) -> str:
    """Why a change touching `paths` (path -> kind) is refused, in words for the agent."""
    return (
        f"the change touches protected paths ({listing(paths)}); the server's configuration "
        f"does not allow agent {agent_id!r} to change them (its allowProtectedPaths setting). "
        "Leave these files out, or ask a maintainer to make the change."
    )
