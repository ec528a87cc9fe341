"""The start page and /setup/*: a GitHub App registered through the manifest flow against
the fake GitHub, saved to an env file the settings loader reads; a GitLab token tried
against the fake GitLab. Everything over real HTTP on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from aiohttp import web

from bot.app import create_app
from bot.config import Settings, load_settings, parse_env_file
from bot.db import make_engine
from bot.envfile import env_value, merge_env
from bot.hosts.github import GitHubApp
from bot.inbox import Inbox
from bot.web.manifest import (
    APP_DEFAULTS,
    APP_YML,
    NewApp,
    PendingStates,
    SetupError,
    build_manifest,
    github_web_url,
    load_app_yml,
    registration_url,
    save_app,
)
from bot.web.setup import SETUP, unreachable_reason, within
from tests.fakes.github import FakeGitHub, new_rsa_key
from tests.fakes.gitlab import TOKEN as GITLAB_TOKEN
from tests.fakes.gitlab import FakeGitLab

OPERATOR = "operator-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef00"


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("api_url", "web_url"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
        ("https://ghe.example.com/api/v3/", "https://ghe.example.com"),
        ("https://api.octocorp.ghe.com", "https://octocorp.ghe.com"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
    ],
)
def test_github_web_url(api_url: str, web_url: str) -> None:
    assert github_web_url(api_url) == web_url


def test_registration_url_for_a_person_and_an_organization() -> None:
    assert registration_url("https://github.com", "s t") == (
        "https://github.com/settings/apps/new?state=s+t"
    )
    assert registration_url("https://ghe.example.com", "abc", "octo-org") == (
        "https://ghe.example.com/organizations/octo-org/settings/apps/new?state=abc"
    )


def test_manifest_carries_app_yml_and_our_urls() -> None:
    app_yml = load_app_yml()
    manifest = build_manifest(app_yml, "https://bot.example.com")
    assert manifest["hook_attributes"] == {
        "url": "https://bot.example.com/webhooks/github",
        "active": True,
    }
    assert manifest["redirect_url"] == "https://bot.example.com/setup/github/callback"
    assert manifest["default_events"] == app_yml["default_events"]
    assert manifest["default_permissions"] == app_yml["default_permissions"]
    assert manifest["name"] == "Threadline"
    assert manifest["public"] is False
    assert build_manifest(app_yml, "https://x.example", name="Mine")["name"] == "Mine"


def test_built_in_defaults_match_app_yml(tmp_path: Path) -> None:
    app_yml = yaml.safe_load(APP_YML.read_text(encoding="utf-8"))
    for key, value in APP_DEFAULTS.items():
        assert app_yml[key] == value, key
    assert load_app_yml(tmp_path / "missing.yml") == dict(APP_DEFAULTS)


@pytest.mark.parametrize(
    ("url", "unreachable"),
    [
        ("http://127.0.0.1:3000", True),
        ("http://localhost:3000", True),
        ("http://10.1.2.3", True),
        ("http://[::1]:3000", True),
        ("https://bot.example.com", False),
        ("https://140.82.121.4", False),
    ],
)
def test_unreachable_reason(url: str, unreachable: bool) -> None:
    assert (unreachable_reason(url) is not None) is unreachable


@pytest.mark.parametrize(
    "value",
    ["plain", "with space inside", " leading", "trailing ", '"quoted"', "'single'", "'a\"", "#x"],
)
def test_env_values_read_back_unchanged(value: str) -> None:
    assert parse_env_file(f"KEY={env_value(value)}\n", "t") == {"KEY": value}


def test_env_value_refuses_line_breaks() -> None:
    with pytest.raises(ValueError, match="line break"):
        env_value("a\nb")


def test_merge_keeps_other_lines_replaces_in_place_and_appends() -> None:
    before = (
        "# my settings\n"
        "THREADLINE_PORT=4000\n"
        "export THREADLINE_GITHUB_APP_ID=1\n"
        "\n"
        "THREADLINE_GITHUB_PRIVATE_KEY=-----BEGIN...\n"
        "THREADLINE_GITHUB_APP_ID=2\n"
    )
    after = merge_env(
        before,
        {
            "THREADLINE_GITHUB_APP_ID": "4242",
            "THREADLINE_GITHUB_PRIVATE_KEY": None,
            "THREADLINE_GITHUB_WEBHOOK_SECRET": "s e c",
        },
    )
    lines = after.splitlines()
    assert lines[:4] == [
        "# my settings",
        "THREADLINE_PORT=4000",
        "export THREADLINE_GITHUB_APP_ID=4242",
        "",
    ]
    assert "-----BEGIN" not in after
    assert lines[-1] == "THREADLINE_GITHUB_WEBHOOK_SECRET=s e c"
    assert parse_env_file(after, "t") == {
        "THREADLINE_PORT": "4000",
        "THREADLINE_GITHUB_APP_ID": "4242",
        "THREADLINE_GITHUB_WEBHOOK_SECRET": "s e c",
    }
    assert merge_env("", {"A": "1"}).endswith("A=1\n")
    with pytest.raises(ValueError, match="not a variable name"):
        merge_env("", {"NOT A NAME": "1"})


def test_states_are_single_use_and_expire() -> None:
    now = [1000.0]
    states = PendingStates(ttl=600, limit=3, clock=lambda: now[0])
    first = states.issue()
    assert states.take(first) == 1000.0
    assert states.take(first) is None
    second = states.issue()
    now[0] += 601
    assert states.take(second) is None
    kept = [states.issue() for _ in range(4)]  # the oldest makes room for the newest
    assert states.take(kept[0]) is None
    assert all(states.take(s) is not None for s in kept[1:])
    again = states.issue()
    issued = states.take(again)
    assert issued is not None
    states.give_back(again, issued)
    assert states.take(again) == issued


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {"pem": "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----"},
        {"id": "12", "pem": "-----BEGIN RSA PRIVATE KEY-----\n"},
        {"id": 12, "pem": "not a key"},
        {"id": 12},
    ],
)
def test_unusable_answers_are_refused(answer: object) -> None:
    with pytest.raises(SetupError):
        NewApp.from_answer(answer)


def test_save_replaces_an_inline_key_and_names_what_the_environment_overrides(
    tmp_path: Path,
) -> None:
    pem, _ = new_rsa_key()
    env_file = tmp_path / "threadline.env"
    env_file.write_text("THREADLINE_GITHUB_PRIVATE_KEY=old-inline-key\n# note\n")
    new = NewApp.from_answer(
        {"id": 77, "slug": "s", "html_url": "h", "pem": pem, "webhook_secret": "w" * 40}
    )
    assert pem not in repr(new)
    assert "w" * 40 not in repr(new)
    saved = save_app(new, env_file, {"THREADLINE_GITHUB_APP_ID": "1"})
    assert saved.removed == ("THREADLINE_GITHUB_PRIVATE_KEY",)
    assert saved.overridden == ("THREADLINE_GITHUB_APP_ID",)
    assert saved.written == (
        "THREADLINE_GITHUB_APP_ID",
        "THREADLINE_GITHUB_WEBHOOK_SECRET",
        "THREADLINE_GITHUB_PRIVATE_KEY_PATH",
    )
    assert (saved.loaded_app_id, saved.problems) == (77, ())
    text = env_file.read_text()
    assert "old-inline-key" not in text
    assert text.startswith("# note\n")
    assert saved.key_file.read_text() == pem


def test_save_reports_what_else_keeps_the_file_from_loading(tmp_path: Path) -> None:
    pem, _ = new_rsa_key()
    env_file = tmp_path / "threadline.env"
    env_file.write_text("THREADLINE_PORT=not-a-port\n")
    saved = save_app(NewApp.from_answer({"id": 5, "pem": pem}), env_file, {})
    assert saved.loaded_app_id is None
    assert saved.problems == ("THREADLINE_PORT must be a whole number, got 'not-a-port'",)
    assert "THREADLINE_GITHUB_WEBHOOK_SECRET" not in saved.written  # none came back


# ---------------------------------------------------------------- the app over HTTP


class Forms(HTMLParser):
    """Every form of a page: its attributes and named inputs."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"attrs": found, "inputs": {}})
        elif tag == "input" and self.forms and "name" in found:
            self.forms[-1]["inputs"][found["name"]] = found.get("value", "")

    def by_testid(self, testid: str) -> dict[str, Any]:
        for form in self.forms:
            if form["attrs"].get("data-testid") == testid:
                return form
        raise AssertionError(f"no form {testid}")


@dataclass
class Site:
    url: str
    app: web.Application
    http: aiohttp.ClientSession
    env_file: Path

    def bearer(self, token: str = OPERATOR) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, *, token: str | None = OPERATOR) -> tuple[int, str]:
        headers = self.bearer(token) if token else {}
        url = path if path.startswith("http") else self.url + path
        async with self.http.get(url, headers=headers, allow_redirects=False) as response:
            return response.status, await response.text()


@contextlib.asynccontextmanager
async def serve(settings: Settings, tmp_path: Path) -> AsyncIterator[Site]:
    engine = make_engine(f"sqlite:///{tmp_path / 'threadline.db'}")
    app = create_app(settings, inbox=Inbox(engine))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        jar = aiohttp.CookieJar(unsafe=True)  # keep cookies set by 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            yield Site(f"http://{host}:{port}", app, http, Path(settings.source_file or ""))
    finally:
        await runner.cleanup()
        engine.dispose()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes a threadline.env outside its own folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(prefix="/api/v3") as fake:  # shaped like GHES: web at the root
        yield fake


def settings_for(github: FakeGitHub, tmp_path: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "operator_token": OPERATOR,
        "viewer_token": VIEWER,
        "github_api_url": github.url,
        "source_file": str(tmp_path / "threadline.env"),
        "host_timeout_seconds": 5.0,
        **extra,
    }
    return Settings(**values)


async def start_registration(site: Site, query: str = "") -> tuple[str, dict[str, Any]]:
    """GET /setup/github: the form's action (GitHub's page with our state) and manifest."""
    status, html = await site.get("/setup/github" + query)
    assert status == 200, html
    form = Forms(html).by_testid("manifest-form")
    assert form["attrs"]["method"] == "post"
    return form["attrs"]["action"], json.loads(form["inputs"]["manifest"])


async def register_on_github(site: Site, action: str, manifest: dict[str, Any]) -> str:
    """What the browser does on GitHub: post the manifest, follow the redirect home."""
    async with site.http.post(
        action, data={"manifest": json.dumps(manifest)}, allow_redirects=False
    ) as response:
        assert response.status == 302, await response.text()
        return response.headers["Location"]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def listing(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


async def test_register_a_github_app_end_to_end(github: FakeGitHub, tmp_path: Path) -> None:
    env_file = tmp_path / "threadline.env"
    env_file.write_text("# kept\nTHREADLINE_PORT=4000\nTHREADLINE_GITHUB_APP_ID=1\n")
    env_file.chmod(0o644)
    async with serve(settings_for(github, tmp_path), tmp_path) as site:
        status, start = await site.get("/")
        assert status == 200
        assert 'href="/setup/github"' in start
        assert f"{site.url}/webhooks/gitlab" in start

        action, manifest = await start_registration(site)
        assert action.startswith(f"{github.root}/settings/apps/new?state=")
        assert manifest["hook_attributes"]["url"] == f"{site.url}/webhooks/github"
        assert manifest["redirect_url"] == f"{site.url}/setup/github/callback"
        assert manifest["default_permissions"] == load_app_yml()["default_permissions"]

        back = await register_on_github(site, action, manifest)
        assert back.startswith(f"{site.url}/setup/github/callback?")
        query = parse_qs(urlsplit(back).query)
        assert query["state"] == parse_qs(urlsplit(action).query)["state"]

        with umask(0):  # the files are created 0600 whatever the umask allows
            status, done = await site.get(back)
        assert status == 200, done
        assert len(github.conversions) == 1
        answer = github.conversions[0]

        # Nothing secret on the page; the variables and files are named.
        for secret in (answer["webhook_secret"], answer["client_secret"], query["code"][0]):
            assert secret not in done
        assert all(line not in done for line in answer["pem"].splitlines()[1:-1])
        assert "THREADLINE_GITHUB_APP_ID" in done
        assert f"{answer['html_url']}/installations/new" in done
        assert "The settings file loads, with App id 4242" in done

        # The env file: replaced 0600, old lines kept, ours merged in.
        assert mode_of(env_file) == 0o600
        text = env_file.read_text()
        assert text.startswith("# kept\nTHREADLINE_PORT=4000\nTHREADLINE_GITHUB_APP_ID=4242\n")
        values = parse_env_file(text, "t")
        key_file = Path(values["THREADLINE_GITHUB_PRIVATE_KEY_PATH"])
        assert key_file.parent == tmp_path
        assert mode_of(key_file) == 0o600
        assert read(key_file) == github.private_key_pem
        assert values["THREADLINE_GITHUB_WEBHOOK_SECRET"] == answer["webhook_secret"]
        assert listing(tmp_path, ".*.tmp") == []

        # The next start reads them, and they work against GitHub.
        loaded = load_settings({}, env_file)
        assert loaded.github_app_id == github.app_id
        assert loaded.github_webhook_secret == answer["webhook_secret"]
        assert loaded.port == 4000
        assert loaded.serving_problems() == []
        assert loaded.github_private_key is not None
        about = await GitHubApp(
            site.http,
            app_id=github.app_id,
            private_key=loaded.github_private_key,
            api_url=github.url,
        ).describe()
        assert about["id"] == github.app_id

        # The same callback again: its state is spent, nothing changes.
        status, again = await site.get(back)
        assert status == 400
        assert "expired" in again
        assert env_file.read_text() == text
        assert len(github.conversions) == 1


async def test_a_new_env_file_is_created_0600(github: FakeGitHub, tmp_path: Path) -> None:
    async with serve(settings_for(github, tmp_path, source_file=None), tmp_path) as site:
        action, manifest = await start_registration(site, "?org=octo-org&name=My+Bot")
        assert action.startswith(f"{github.root}/organizations/octo-org/settings/apps/new?")
        assert manifest["name"] == "My Bot"
        with umask(0o000):
            status, _ = await site.get(await register_on_github(site, action, manifest))
        assert status == 200
    created = tmp_path / "threadline.env"  # the loader's default, in the working folder
    assert mode_of(created) == 0o600
    assert load_settings({}, created).github_app_id == github.app_id


async def test_a_key_file_is_never_overwritten(github: FakeGitHub, tmp_path: Path) -> None:
    taken = tmp_path / f"github-app-{github.app_id}.private-key.pem"
    taken.write_text("someone else's\n")
    async with serve(settings_for(github, tmp_path), tmp_path) as site:
        action, manifest = await start_registration(site)
        status, _ = await site.get(await register_on_github(site, action, manifest))
    assert status == 200
    assert taken.read_text() == "someone else's\n"
    key_path = parse_env_file((tmp_path / "threadline.env").read_text(), "t")[
        "THREADLINE_GITHUB_PRIVATE_KEY_PATH"
    ]
    assert key_path.endswith(f"github-app-{github.app_id}-2.private-key.pem")


async def test_unknown_or_expired_state_writes_nothing(github: FakeGitHub, tmp_path: Path) -> None:
    async with serve(settings_for(github, tmp_path), tmp_path) as site:
        code = github.manifest_code(build_manifest(load_app_yml(), site.url))
        status, html = await site.get(f"/setup/github/callback?code={code}&state=forged")
        assert status == 400
        assert "Nothing was saved" in html

        now = [0.0]
        site.app[SETUP].states = PendingStates(clock=lambda: now[0])
        action, manifest = await start_registration(site)
        back = await register_on_github(site, action, manifest)
        now[0] += 601
        status, html = await site.get(back)
        assert status == 400
        assert "older than 10 minutes" in html

        status, html = await site.get("/setup/github/callback")
        assert status == 400
    assert not (tmp_path / "threadline.env").exists()
    assert github.conversions == []
    assert github.requests_to("POST", r"/app-manifests/.*") == []


async def test_a_used_or_unknown_code_is_refused(github: FakeGitHub, tmp_path: Path) -> None:
    env_file = tmp_path / "threadline.env"
    env_file.write_text("THREADLINE_PORT=4000\n")
    async with serve(settings_for(github, tmp_path), tmp_path) as site:
        used = github.manifest_code(build_manifest(load_app_yml(), site.url))
        github.conversions.append({})  # spend it as another server would have
        github.manifest_codes.pop(used)
        for code in (used, "never-issued"):
            action, _ = await start_registration(site)
            state = parse_qs(urlsplit(action).query)["state"][0]
            status, html = await site.get(f"/setup/github/callback?code={code}&state={state}")
            assert status == 502
            assert "GitHub does not know this code" in html
            assert code not in html
    assert env_file.read_text() == "THREADLINE_PORT=4000\n"
    assert len(github.requests_to("POST", r"/app-manifests/[^/]+/conversions")) == 2
    assert listing(tmp_path, "*.pem") == []


async def test_github_unreachable_keeps_the_state_for_a_retry(
    github: FakeGitHub, tmp_path: Path
) -> None:
    async with serve(settings_for(github, tmp_path), tmp_path) as site:
        action, manifest = await start_registration(site)
        back = await register_on_github(site, action, manifest)
        github.fail("POST", r"/app-manifests/[^/]+/conversions", 503)
        status, html = await site.get(back)
        assert status == 502
        assert "reload this page" in html
        status, _ = await site.get(back)  # the reload
        assert status == 200
    assert load_settings({}, tmp_path / "threadline.env").github_app_id == github.app_id


async def test_an_unwritable_place_is_found_before_the_code_is_spent(
    github: FakeGitHub, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder" / "threadline.env"
    async with serve(settings_for(github, tmp_path, source_file=str(missing)), tmp_path) as site:
        status, html = await site.get("/setup/github")
        assert status == 400
        assert "does not exist" in html
        assert 'data-testid="manifest-form"' not in html

        # The folder goes away between the page and GitHub's redirect back.
        site.app[SETUP].settings = settings_for(github, tmp_path)
        action, manifest = await start_registration(site)
        back = await register_on_github(site, action, manifest)
        site.app[SETUP].settings = settings_for(github, tmp_path, source_file=str(missing))
        status, html = await site.get(back)
        assert status == 500
        assert github.conversions == []
        missing.parent.mkdir()
        status, _ = await site.get(back)  # fixed, reloaded: the code was not spent
        assert status == 200
    assert load_settings({}, missing).github_app_id == github.app_id


async def test_setup_needs_an_operator(github: FakeGitHub, tmp_path: Path) -> None:
    async with serve(settings_for(github, tmp_path), tmp_path) as site:
        status, _ = await site.get("/setup/github", token=None)
        assert status == 303
        status, _ = await site.get("/", token=None)
        assert status == 303
        status, _ = await site.get("/setup/github", token=VIEWER)
        assert status == 403
        status, html = await site.get("/", token=VIEWER)
        assert status == 200
        assert "/setup/github" not in html  # a viewer is not offered set-up
        assert 'data-testid="gitlab-test-form"' not in html

        # Back from GitHub without the cookie: one same-site reload, then sign-in.
        action, manifest = await start_registration(site)
        back = await register_on_github(site, action, manifest)
        status, html = await site.get(back, token=None)
        assert status == 200
        assert 'http-equiv="refresh"' in html
        assert "resumed=1" in html
        resumed = back + "&resumed=1"
        status, _ = await site.get(resumed, token=None)
        assert status == 303
        assert github.conversions == []
        status, _ = await site.get(resumed)  # the operator's request still works
        assert status == 200

        test = f"{site.url}/setup/gitlab/test"
        async with site.http.post(test, data={}, allow_redirects=False) as response:
            # Not signed in: a sign-in page that says nothing was sent, towards the form's page.
            assert response.status == 401
            page = await response.text()
        assert 'data-testid="form-not-taken"' in page
        assert 'name="next" value="/setup"' in page  # the nearest page (GET) above it


async def test_registration_page_allows_posting_to_github_only(
    github: FakeGitHub, tmp_path: Path
) -> None:
    async with serve(settings_for(github, tmp_path), tmp_path) as site:
        url = site.url + "/setup/github"
        async with site.http.get(url, headers=site.bearer()) as response:
            csp = response.headers["Content-Security-Policy"]
        assert f"form-action 'self' {github.root}" in csp
        status, html = await site.get("/setup/github?org=not/an/org")
        assert status == 400
        assert 'data-testid="manifest-form"' not in html


# ---------------------------------------------------------------- GitLab


async def test_gitlab_connection_test(github: FakeGitHub, tmp_path: Path) -> None:
    async with FakeGitLab() as gitlab:
        settings = settings_for(github, tmp_path, gitlab_url=gitlab.url)
        async with serve(settings, tmp_path) as site:
            test = f"{site.url}/setup/gitlab/test"
            form = {"url": gitlab.url, "token": GITLAB_TOKEN}
            async with site.http.post(test, data=form, headers=site.bearer()) as response:
                assert response.status == 200
                html = await response.text()
            assert "Connected to" in html
            assert "threadline-bot" in html
            assert GITLAB_TOKEN not in html

            wrong = "glpat-wrong-token-00000000"
            form = {"url": gitlab.url, "token": wrong}
            async with site.http.post(test, data=form, headers=site.bearer()) as response:
                html = await response.text()
            assert "Failed for" in html
            assert "401" in html
            assert wrong not in html

            async with site.http.post(test, data={"url": gitlab.url}, headers=site.bearer()) as r:
                assert r.status == 400  # no token given and none configured
                assert "Enter a token" in await r.text()


async def test_gitlab_test_uses_the_configured_token_and_needs_csrf(
    github: FakeGitHub, tmp_path: Path
) -> None:
    async with FakeGitLab() as gitlab:
        settings = settings_for(
            github,
            tmp_path,
            gitlab_url=gitlab.url,
            gitlab_token=GITLAB_TOKEN,
            gitlab_webhook_token="webhook-token-0123456789",
        )
        async with serve(settings, tmp_path) as site:
            # Sign in as a browser does: a cookie, and forms carrying the CSRF token.
            async with site.http.post(
                f"{site.url}/login", data={"token": OPERATOR}, allow_redirects=False
            ) as response:
                assert response.status == 303
            status, page = await site.get("/setup", token=None)
            assert status == 200
            form = Forms(page).by_testid("gitlab-test-form")
            assert form["inputs"]["url"] == gitlab.url
            assert form["inputs"]["token"] == ""
            test = f"{site.url}/setup/gitlab/test"
            async with site.http.post(test, data={"url": gitlab.url}) as response:
                assert response.status == 403  # no CSRF token
            before = len(gitlab.requests)
            assert before == 0
            async with site.http.post(test, data=form["inputs"]) as response:
                assert response.status == 200
                html = await response.text()
            assert "threadline-bot" in html
            assert "scopes api" in html
            assert GITLAB_TOKEN not in html
            assert gitlab.requests[0].headers["PRIVATE-TOKEN"] == GITLAB_TOKEN


@pytest.mark.parametrize(
    ("wanted", "allowed"),
    [
        ("https://gitlab.example.com/gitlab", True),
        ("https://gitlab.example.com/gitlab/", True),
        ("HTTPS://GitLab.Example.com:443/gitlab", True),
        ("https://gitlab.example.com./gitlab", True),
        ("https://gitlab.example.com/gitlab/api/v4", True),
        ("https://gitlab.example.com", False),  # above the configured path
        ("https://gitlab.example.com/gitlabx", False),
        ("https://gitlab.example.com/other", False),
        ("https://gitlab.example.com/gitlab/../other", False),
        ("https://gitlab.example.com/gitlab/%2e%2e/other", False),
        ("https://gitlab.example.com/gitlab\\..\\x", False),
        ("http://gitlab.example.com/gitlab", False),  # the token in clear text
        ("https://gitlab.example.com:8443/gitlab", False),
        ("https://gitlab.example.com.evil.example/gitlab", False),
        ("https://gitlab.example.com@evil.example/gitlab", False),
        ("https://user@gitlab.example.com/gitlab", False),
        ("https://evil.example/gitlab", False),
        ("https://gitlab.example.com/gitlab?x=1", False),
        ("https://gitlab.example.com:99999/gitlab", False),
        ("ftp://gitlab.example.com/gitlab", False),
        ("gitlab.example.com/gitlab", False),
    ],
)
def test_the_configured_gitlab_token_goes_to_the_configured_url_only(
    wanted: str, allowed: bool
) -> None:
    assert within("https://gitlab.example.com/gitlab", wanted) is allowed


def test_a_configured_gitlab_at_the_root_covers_its_whole_host() -> None:
    assert within("http://127.0.0.1:8080", "http://127.0.0.1:8080/anything")
    assert within("http://127.0.0.1:8080", "http://127.0.0.1:8080")
    assert not within("http://127.0.0.1:8080", "http://127.0.0.1:8081")
    assert not within("http://127.0.0.1:8080", "http://localhost:8080")


async def test_the_configured_gitlab_token_is_never_sent_elsewhere(
    github: FakeGitHub, tmp_path: Path
) -> None:
    """A form naming another address gets a clear refusal and no request leaves with the
    configured token; a token typed in the form may go to any address, alone."""
    async with FakeGitLab(prefix="/gitlab") as gitlab, FakeGitLab(token="typed") as elsewhere:
        settings = settings_for(
            github,
            tmp_path,
            gitlab_url=gitlab.url,
            gitlab_token=GITLAB_TOKEN,
            gitlab_webhook_token="webhook-token-0123456789",
        )
        root = f"http://127.0.0.1:{gitlab.port}"  # the configured server, above its path
        async with serve(settings, tmp_path) as site:
            test = f"{site.url}/setup/gitlab/test"
            for url in (
                elsewhere.url,
                f"{elsewhere.url}/gitlab",
                f"http://127.0.0.1:{gitlab.port}@127.0.0.1:{elsewhere.port}/gitlab",
                root,
                f"{gitlab.url}/../x",
            ):
                form = {"url": url, "token": ""}
                async with site.http.post(test, data=form, headers=site.bearer()) as response:
                    assert response.status == 400, url
                    html = await response.text()
                assert "The configured token is only sent to the configured GitLab" in html
                assert "Nothing was sent" in html
                assert GITLAB_TOKEN not in html
            assert elsewhere.requests == []
            assert gitlab.requests == []

            # The configured URL, spelled a little differently: the configured token goes.
            form = {"url": f"HTTP://127.0.0.1:{gitlab.port}/gitlab/"}
            async with site.http.post(test, data=form, headers=site.bearer()) as response:
                assert response.status == 200
                assert "threadline-bot" in await response.text()
            assert gitlab.requests
            assert {r.headers["PRIVATE-TOKEN"] for r in gitlab.requests} == {GITLAB_TOKEN}

            # Another address with a token typed in the form: that token, and only it.
            form = {"url": elsewhere.url, "token": "typed"}
            async with site.http.post(test, data=form, headers=site.bearer()) as response:
                assert response.status == 200
                assert "Connected to" in await response.text()
            assert elsewhere.requests
            assert all(r.headers.getall("PRIVATE-TOKEN") == ["typed"] for r in elsewhere.requests)
            assert all(GITLAB_TOKEN not in str(r.headers) for r in elsewhere.requests)


async def test_a_loopback_address_is_offered_poll_mode(github: FakeGitHub, tmp_path: Path) -> None:
    async with serve(settings_for(github, tmp_path), tmp_path) as site:
        status, html = await site.get("/setup")
        assert status == 200
        assert 'data-testid="poll-mode"' in html
        assert "THREADLINE_GITHUB_POLL_SECONDS=5" in html
    public = settings_for(github, tmp_path, public_url="https://bot.example.com")
    async with serve(public, tmp_path) as site:
        _, html = await site.get("/setup")
        assert 'data-testid="poll-mode"' not in html
    polling = settings_for(github, tmp_path, github_poll_seconds=5.0)
    async with serve(polling, tmp_path) as site:
        _, html = await site.get("/setup")
        assert "Poll mode is on" in html
        assert "every 5 s" in html
