"""The `git` program, run with an environment built from nothing and a host token that
reaches git only through that environment.

The token becomes an `http.<origin>/.extraHeader` entry passed in `GIT_CONFIG_COUNT`,
`GIT_CONFIG_KEY_n` and `GIT_CONFIG_VALUE_n` (git 2.31+, `git help config`, "ENVIRONMENT"),
so it is in no argv (readable in /proc by every user), no remote URL and no config file,
and git sends it only to URLs under the host's origin. Redirects are not followed, so
the header cannot follow one to another host.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bot.workspaces import proc

GIT_TIMEOUT_SECONDS = 600.0
GIT_OUTPUT_BYTES = 20_000
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


class GitError(Exception):
    """A git command failed; the message is git's own output (it never holds the token)."""


def origin(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased; '' when it is not http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


@dataclass(frozen=True)
class Credential:
    """A host's token as the HTTP header git sends, and the one origin it belongs to."""

    host_origin: str
    header: str = field(repr=False)

    @classmethod
    def basic(cls, host_url: str, username: str, token: str) -> Credential:
        """HTTP Basic with the token as password.

        GitHub installation tokens: user `x-access-token`
        (docs.github.com, "Authenticating as a GitHub App installation"); GitLab access
        tokens over Git HTTP: user `oauth2` (or any non-blank name).
        """
        pair = base64.b64encode(f"{username}:{token}".encode()).decode("ascii")
        return cls(origin(host_url), f"Authorization: Basic {pair}")

    @classmethod
    def github(cls, host_url: str, token: str) -> Credential:
        return cls.basic(host_url, "x-access-token", token)

    @classmethod
    def gitlab(cls, host_url: str, token: str) -> Credential:
        return cls.basic(host_url, "oauth2", token)

    def check(self, url: str) -> None:
        """Refuse a fetch URL whose origin is not the host's: the token never goes elsewhere."""
        if not self.host_origin or origin(url) != self.host_origin:
            raise GitError(
                f"refusing to send {self.host_origin or 'the host'}'s token to {origin(url) or url}: "
                "the clone URL must be on the configured host"
            )


def git_env(
    home: Path, credential: Credential | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What git needs and nothing else: no user or system config, no prompts."""
    config: list[tuple[str, str]] = [
        ("safe.directory", "*"),  # the sandbox user may own the worktree's files
        ("http.followRedirects", "false"),
        ("protocol.file.allow", "never"),
        ("core.hooksPath", "/dev/null"),
    ]
    if credential is not None and credential.host_origin:
        config.append((f"http.{credential.host_origin}/.extraHeader", credential.header))
    env = {
        "PATH": SAFE_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GCM_INTERACTIVE": "never",
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    for number, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{number}"] = key
        env[f"GIT_CONFIG_VALUE_{number}"] = value
    env.update(extra or {})
    return env


def redact(text: str, credential: Credential | None) -> str:
    """Git's output with the header's secret part removed, should git ever echo it."""
    if credential is None:
        return text
    secret = credential.header.partition(": ")[2]
    for piece in (secret, secret.split(" ")[-1]):
        if piece:
            text = text.replace(piece, "[hidden]")
    return text


async def git(
    args: Sequence[str],
    *,
    cwd: Path,
    home: Path,
    credential: Credential | None = None,
    time_limit: float = GIT_TIMEOUT_SECONDS,
    extra_env: Mapping[str, str] | None = None,
    max_output: int = GIT_OUTPUT_BYTES,
    whole: bool = False,
) -> str:
    """Run `git ARGS` in `cwd`; its output, or GitError with git's (redacted) message.

    `whole`: output cut at `max_output` is an error (a diff must not lose its middle).
    """
    done = await proc.run(
        ["git", *args],
        env=git_env(home, credential, extra_env),
        cwd=cwd,
        time_limit=time_limit,
        max_output=max_output,
    )
    output = redact(done.output, credential)
    if done.timed_out:
        raise GitError(f"git {args[0]} took longer than {time_limit:g} s and was stopped")
    if done.exit_code != 0:
        raise GitError(f"git {args[0]} failed ({done.exit_code}): {output.strip()[-2000:]}")
    if whole and done.cut:
        raise GitError(f"git {args[0]} printed {done.total_bytes} bytes, over {max_output}")
    return output
