"""`threadline doctor`: check the settings, the database and each host's credentials for real.

Each check gives a line: ok, warn (works, but not as it should) or fail (will not work).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.config import Settings
from bot.db import describe_error, make_engine, ping, sqlite_path
from bot.db.migrate import current_revision, head_revision
from bot.hosts import Hosts
from bot.hosts.base import HostError
from bot.hosts.github import GitHubApp
from bot.preflight import startup_problems
from bot.workspaces import sandbox as sb

# What app.yml asks for (default_permissions); tests keep the two in step.
GITHUB_PERMISSIONS = {
    "issues": "write",
    "pull_requests": "write",
    "contents": "write",  # approved change sets: blobs, trees, commits, a branch
    "metadata": "read",
    "checks": "write",
}
_LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}
GITLAB_SCOPES = ("api",)
MAX_INSTALLATIONS_CHECKED = 20


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warn | fail
    what: str
    detail: str


def missing_permissions(granted: dict[str, str]) -> list[str]:
    """The permissions app.yml asks for that an installation token lacks, as 'name:level'."""
    return [
        f"{name}:{level}"
        for name, level in GITHUB_PERMISSIONS.items()
        if _LEVELS.get(granted.get(name, "none"), 0) < _LEVELS[level]
    ]


def check_database(settings: Settings) -> list[Finding]:
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        # Connecting would create the file; a check must leave the folder as it found it.
        return [missing_database(settings, path)]
    engine = make_engine(settings.database_url)
    try:
        ping(engine)
        current, head = current_revision(engine), head_revision(engine)
    except Exception as exc:
        detail = describe_error(settings.database_url, exc)
        return [Finding("fail", "database", f"unreachable: {detail}")]
    finally:
        engine.dispose()
    if current != head and settings.auto_migrate:
        detail = (
            f"schema at {current or 'nothing'}; `threadline serve` upgrades it to {head} at start"
        )
        return [Finding("warn", "database", detail)]
    if current != head:
        return [
            Finding(
                "fail",
                "database",
                f"schema at {current or 'nothing'}, needs {head}: run `threadline db upgrade`",
            )
        ]
    return [Finding("ok", "database", f"reachable, schema at {head}")]


def missing_database(settings: Settings, path: Path) -> Finding:
    """A SQLite file that is not there yet: `serve` makes it, unless told not to migrate."""
    if not path.resolve().parent.is_dir():
        return Finding(
            "fail", "database", f"{path}: the folder {path.resolve().parent} does not exist"
        )
    if settings.auto_migrate:
        return Finding(
            "warn",
            "database",
            f"{path} does not exist yet; `threadline serve` (or `threadline db upgrade`) creates it",
        )
    return Finding(
        "fail",
        "database",
        f"{path} does not exist yet and THREADLINE_AUTO_MIGRATE is off: run `threadline db upgrade`",
    )


async def check_github_app(app: GitHubApp) -> list[Finding]:
    about = await app.describe()
    found = [
        Finding("ok", "GitHub App", f"{about.get('name')} ({about.get('slug')}), id {app.app_id}")
    ]
    installations = await app.installations()
    if not installations:
        found.append(Finding("warn", "GitHub installations", "the App is installed nowhere yet"))
    for inst in installations[:MAX_INSTALLATIONS_CHECKED]:
        account = (inst.get("account") or {}).get("login", "?")
        name = f"installation {inst.get('id')} ({account})"
        if inst.get("suspended_at"):
            found.append(Finding("warn", name, "suspended"))
            continue
        try:
            await app.installation_token(int(inst["id"]))
        except HostError as exc:
            found.append(Finding("fail", name, f"no token: {exc}"))
            continue
        granted = dict(p.split(":", 1) for p in app.permissions(int(inst["id"])))
        lacking = missing_permissions(granted)
        if lacking:
            found.append(
                Finding(
                    "fail",
                    name,
                    "lacks " + ", ".join(lacking) + " (accept them in the installation's settings)",
                )
            )
        else:
            found.append(Finding("ok", name, "has every permission app.yml asks for"))
    if len(installations) > MAX_INSTALLATIONS_CHECKED:
        found.append(
            Finding(
                "ok",
                "GitHub installations",
                f"{len(installations)} in all; first {MAX_INSTALLATIONS_CHECKED} checked",
            )
        )
    return found


async def check_hosts(settings: Settings) -> list[Finding]:
    found: list[Finding] = []
    timeout = aiohttp.ClientTimeout(total=settings.host_timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        hosts = Hosts.from_settings(settings, http)
        try:
            found += await _guard("GitHub", lambda: _github(settings, hosts))
            found += await _guard("GitLab", lambda: _gitlab(settings, hosts))
        finally:
            hosts.close()
    return found


async def _github(settings: Settings, hosts: Hosts) -> list[Finding]:
    if hosts.github is None:
        detail = (
            "webhooks only: no App or token to write with"
            if settings.github_webhook_secret
            else "not configured"
        )
        level = "warn" if settings.github_webhook_secret else "ok"
        return [Finding(level, "GitHub", detail)]
    if isinstance(hosts.github, GitHubApp):
        return await check_github_app(hosts.github)
    who = await hosts.github.client().whoami()
    detail = f"token of {who.login}" + (f", scopes {', '.join(who.scopes)}" if who.scopes else "")
    if who.scopes and "repo" not in who.scopes and "public_repo" not in who.scopes:
        return [Finding("fail", "GitHub token", detail + ": needs the repo scope")]
    return [Finding("ok", "GitHub token", detail)]


async def _gitlab(settings: Settings, hosts: Hosts) -> list[Finding]:
    if hosts.gitlab is None:
        detail = (
            "webhooks only: no token to write with"
            if settings.gitlab_webhook_token
            else "not configured"
        )
        return [Finding("warn" if settings.gitlab_webhook_token else "ok", "GitLab", detail)]
    who = await hosts.gitlab.whoami()
    detail = f"{settings.gitlab_url}: {who.kind} of {who.login}"
    lacking = [s for s in GITLAB_SCOPES if who.scopes and s not in who.scopes]
    if lacking:
        return [Finding("fail", "GitLab token", f"{detail}; lacks scope {', '.join(lacking)}")]
    scopes = f", scopes {', '.join(who.scopes)}" if who.scopes else ""
    return [Finding("ok", "GitLab token", detail + scopes)]


async def _guard(host: str, check: Callable[[], Awaitable[list[Finding]]]) -> list[Finding]:
    try:
        return await check()
    except HostError as exc:
        return [Finding("fail", host, str(exc))]


def check_sandbox(settings: Settings) -> list[Finding]:
    """Whether agents' commands can run in the sandbox here (user namespaces allowed)."""
    if settings.sandbox == "none":
        return [Finding("warn", "sandbox", "none: agents' commands run unsandboxed")]
    bwrap = sb.bwrap_path()
    if bwrap is None:
        return [Finding("warn", "sandbox", sb.NO_BWRAP)]
    for program, package in (("prlimit", "util-linux"), ("git", "git")):
        if shutil.which(program, path=sb.SANDBOX_PATH) is None:
            return [Finding("fail", "sandbox", f"`{program}` is missing (package {package})")]
    folder = Path(tempfile.mkdtemp(prefix="threadline-doctor-"))
    try:
        os.chmod(folder, 0o755)  # noqa: S103 (the sandbox user must reach it)
        if os.geteuid() == 0:
            os.chown(folder, settings.sandbox_uid, settings.sandbox_uid)
        done = asyncio.run(
            sb.run_sandboxed(
                folder,
                ["true"],
                policy=sb.Policy(uid=settings.sandbox_uid),
                limits=sb.Limits(seconds=20),
                bwrap=bwrap,
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if done.exit_code != 0:
        reason = done.output.strip()[-300:] or f"exit code {done.exit_code}"
        return [
            Finding(
                "fail",
                "sandbox",
                f"bubblewrap cannot run here ({reason}): {userns_hint(_read_proc)} "
                "(README, Running in containers)",
            )
        ]
    return [Finding("ok", "sandbox", f"bubblewrap runs commands as uid {settings.sandbox_uid}")]


def _read_proc(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def userns_hint(read: Callable[[str], str | None]) -> str:
    """Why unprivileged user namespaces (what bubblewrap needs) are likely refused here,
    from the kernel's switches (`read(path)`: a /proc file's text, None when absent)."""
    if read("/proc/sys/user/max_user_namespaces") == "0":
        return "user namespaces are switched off (sysctl user.max_user_namespaces=0)"
    if read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return "unprivileged user namespaces are off (sysctl kernel.unprivileged_userns_clone=0)"
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns=1): give bwrap a profile that allows them"
        )
    if read("/.dockerenv") is not None or read("/run/.containerenv") is not None:
        return (
            "this is a container whose seccomp or AppArmor profile likely blocks "
            "unshare(CLONE_NEWUSER): run the worker with a profile that allows it"
        )
    return "unprivileged user namespaces are not allowed here"


def run(settings: Settings) -> list[Finding]:
    found = [Finding("fail", "settings", p) for p in startup_problems(settings)]
    found += [Finding("warn", "settings", w) for w in settings.warnings()]
    if not found:
        found.append(Finding("ok", "settings", "serve can start"))
    found += check_database(settings)
    found += asyncio.run(check_hosts(settings))
    found += check_sandbox(settings)
    return found
