"""`threadline doctor` against the fake hosts, and app.yml kept in step with what it checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot import doctor
from bot.cli import main
from bot.config import Settings
from bot.doctor import check_sandbox, userns_hint
from tests import payloads as p
from tests.conftest import BWRAP_MISSING, with_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import TOKEN as GITLAB_TOKEN
from tests.fakes.gitlab import FakeGitLab

APP_YML = Path(__file__).resolve().parents[1] / "app.yml"


def test_app_yml_asks_for_what_doctor_checks() -> None:
    manifest = yaml.safe_load(APP_YML.read_text(encoding="utf-8"))
    assert manifest["default_permissions"] == doctor.GITHUB_PERMISSIONS
    assert set(manifest["default_events"]) == {
        "issue_comment",
        "issues",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
    }
    assert manifest["hook_attributes"]["url"].endswith("/webhooks/github")


def test_missing_permissions_compares_levels() -> None:
    granted = {"issues": "write", "pull_requests": "read", "contents": "write", "checks": "write"}
    assert doctor.missing_permissions(granted) == ["pull_requests:write", "metadata:read"]
    assert doctor.missing_permissions(dict(doctor.GITHUB_PERMISSIONS)) == []


async def test_doctor_checks_the_app_its_installations_and_gitlab() -> None:
    async with FakeGitHub() as github, FakeGitLab() as gitlab:
        github.install(1, ["octo-org/hello-world"])
        github.install(2, ["octo-org/other"])
        github.suspend(2)
        settings = Settings(
            github_webhook_secret=p.SECRET,
            github_app_id=github.app_id,
            github_private_key=github.private_key_pem,
            github_api_url=github.url,
            gitlab_url=gitlab.url,
            gitlab_token=GITLAB_TOKEN,
            gitlab_webhook_token=p.GITLAB_TOKEN,
        )
        findings = await doctor.check_hosts(settings)
    by_what = {f.what: f for f in findings}
    assert by_what["GitHub App"].level == "ok"
    assert "threadline-test" in by_what["GitHub App"].detail
    # The fake grants checks, contents and issues but not pull_requests or metadata.
    first = by_what["installation 1 (octo-org)"]
    assert first.level == "fail"
    assert "pull_requests:write" in first.detail
    assert by_what["installation 2 (octo-org)"].level == "warn"
    assert by_what["GitLab token"].level == "ok"
    assert "threadline-bot" in by_what["GitLab token"].detail
    assert GITLAB_TOKEN not in repr(findings)


async def test_doctor_reports_refused_credentials() -> None:
    async with FakeGitLab() as gitlab:
        settings = Settings(
            gitlab_url=gitlab.url, gitlab_token="glpat-wrong", gitlab_webhook_token=p.GITLAB_TOKEN
        )
        findings = await doctor.check_hosts(settings)
    gitlab_findings = [f for f in findings if f.what.startswith("GitLab")]
    assert [f.level for f in gitlab_findings] == ["fail"]
    assert "glpat-wrong" not in gitlab_findings[0].detail


def test_doctor_command_without_hosts(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("THREADLINE_DATABASE_URL", database_url)
    monkeypatch.setenv("THREADLINE_GITHUB_WEBHOOK_SECRET", p.SECRET)
    # The schema is not there yet: serve would make it, unless told not to migrate.
    assert main(["doctor"]) == 0
    assert "warn  database: " in capsys.readouterr().out
    monkeypatch.setenv("THREADLINE_AUTO_MIGRATE", "false")
    assert main(["doctor"]) == 1
    assert "threadline db upgrade" in capsys.readouterr().out
    monkeypatch.delenv("THREADLINE_AUTO_MIGRATE")
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok    database: reachable" in out
    assert "warn  GitHub: webhooks only" in out
    assert "0 failed" in out


def test_doctor_says_whether_the_sandbox_runs_here(settings: Settings) -> None:
    found = check_sandbox(settings)
    if BWRAP_MISSING:
        assert found[0].level == "warn"
        assert "apt-get install bubblewrap" in found[0].detail
    else:
        assert (found[0].level, found[0].detail) == (
            "ok",
            f"bubblewrap runs commands as uid {settings.sandbox_uid}",
        )
    unsandboxed = check_sandbox(with_settings(settings, sandbox="none"))
    assert unsandboxed[0].level == "warn"


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"/proc/sys/user/max_user_namespaces": "0"}, "user.max_user_namespaces=0"),
        ({"/proc/sys/kernel/unprivileged_userns_clone": "0"}, "unprivileged_userns_clone=0"),
        (
            {"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1"},
            "AppArmor restricts unprivileged user namespaces",
        ),
        ({"/.dockerenv": ""}, "seccomp or AppArmor profile likely blocks unshare(CLONE_NEWUSER)"),
        ({"/run/.containerenv": ""}, "seccomp or AppArmor profile"),
        ({"/proc/sys/user/max_user_namespaces": "96369"}, "not allowed here"),
        ({}, "not allowed here"),
    ],
)
def test_doctor_names_why_user_namespaces_are_refused(files: dict[str, str], says: str) -> None:
    assert says in userns_hint(files.get)
