"""Webhook payloads shaped as GitHub documents them, and the GitLab fixtures from shared/.

GitHub's shapes follow https://docs.github.com/en/webhooks/webhook-events-and-payloads
(trimmed to the fields a receiver reads, plus enough of the rest to be realistic).
GitLab's come verbatim from tests/fixtures/gitlab (see SOURCES.md there).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.ingress.verify import sign_github

SECRET = "It's a Secret to Everybody"
GITLAB_TOKEN = "gitlab-webhook-token-0123456789"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gitlab"

# Which X-Gitlab-Event header goes with which fixture (from HEADERS.txt beside them).
GITLAB_FIXTURES = {
    "docs/note_hook.merge_request.json": "Note Hook",
    "docs/note_hook.issue.json": "Note Hook",
    "docs/issue_hook.open.json": "Issue Hook",
    "docs/merge_request_hook.open.json": "Merge Request Hook",
    "go-gitlab/note_merge_request.json": "Note Hook",
    "go-gitlab/note_issue.json": "Note Hook",
    "go-gitlab/note_commit.json": "Note Hook",
    "go-gitlab/note_snippet.json": "Note Hook",
    "go-gitlab/merge_request.json": "Merge Request Hook",
    "go-gitlab/group_merge_request.json": "Merge Request Hook",
    "go-gitlab/service_merge_request.json": "Merge Request Hook",
    "go-gitlab/issue.json": "Issue Hook",
    "go-gitlab/push.json": "Push Hook",
}


def gitlab_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def user(login: str, uid: int = 1, kind: str = "User") -> dict[str, Any]:
    return {
        "login": login,
        "id": uid,
        "node_id": f"MDQ6VXNlcj{uid}",
        "type": kind,
        "site_admin": False,
        "html_url": f"https://github.com/{login}",
    }


def repository(full_name: str = "octo-org/hello-world") -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": user(owner, 9919, "Organization"),
        "html_url": f"https://github.com/{full_name}",
        "default_branch": "main",
    }


def _issue(number: int, *, pull: bool, title: str = "Retry logic drops errors") -> dict[str, Any]:
    issue: dict[str, Any] = {
        "url": f"https://api.github.com/repos/octo-org/hello-world/issues/{number}",
        "html_url": f"https://github.com/octo-org/hello-world/issues/{number}",
        "id": 1000 + number,
        "node_id": "I_kwDOA",
        "number": number,
        "title": title,
        "user": user("maintainer", 2),
        "labels": [],
        "state": "open",
        "assignees": [],
        "body": "The retry loop swallows the last error.",
        "author_association": "MEMBER",
    }
    if pull:
        issue["pull_request"] = {
            "url": f"https://api.github.com/repos/octo-org/hello-world/pulls/{number}",
            "html_url": f"https://github.com/octo-org/hello-world/pull/{number}",
        }
    return issue


def issue_comment(
    body: str = "@threadline review this",
    *,
    number: int = 7,
    pull: bool = False,
    action: str = "created",
    author: str = "maintainer",
    author_type: str = "User",
    comment_id: int = 5001,
    at: str = "2026-11-21T10:00:00Z",
) -> dict[str, Any]:
    return {
        "action": action,
        "issue": _issue(number, pull=pull),
        "comment": {
            "id": comment_id,
            "node_id": "IC_kwDOA",
            "url": f"https://api.github.com/repos/octo-org/hello-world/issues/comments/{comment_id}",
            "html_url": f"https://github.com/octo-org/hello-world/issues/{number}#issuecomment-{comment_id}",
            "body": body,
            "user": user(author, 2, author_type),
            "created_at": at,
            "updated_at": at,
            "author_association": "MEMBER",
        },
        "repository": repository(),
        "sender": user(author, 2, author_type),
        "installation": {"id": 4242, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="},
    }


def _pull(number: int) -> dict[str, Any]:
    return {
        "url": f"https://api.github.com/repos/octo-org/hello-world/pulls/{number}",
        "id": 2000 + number,
        "number": number,
        "state": "open",
        "title": "Make retries keep the last error",
        "body": "Fixes #7",
        "user": user("contributor", 3),
        "html_url": f"https://github.com/octo-org/hello-world/pull/{number}",
        "head": {"ref": "fix-retry", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
        "base": {"ref": "main", "sha": "9b2f7f8e3c1d4a5b6c7d8e9f0a1b2c3d4e5f6a7b"},
    }


def review_comment(
    body: str = "what about line 45?",
    *,
    number: int = 12,
    comment_id: int = 7001,
    in_reply_to: int | None = None,
    action: str = "created",
    author: str = "maintainer",
) -> dict[str, Any]:
    comment: dict[str, Any] = {
        "id": comment_id,
        "node_id": "PRRC_kwDOA",
        "pull_request_review_id": 8001,
        "diff_hunk": "@@ -40,6 +40,8 @@ def retry(call):",
        "path": "src/retry.py",
        "commit_id": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "original_commit_id": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "user": user(author, 2),
        "body": body,
        "html_url": f"https://github.com/octo-org/hello-world/pull/{number}#discussion_r{comment_id}",
        "line": 45,
        "original_line": 45,
        "side": "RIGHT",
        "author_association": "MEMBER",
    }
    if in_reply_to is not None:
        comment["in_reply_to_id"] = in_reply_to
    return {
        "action": action,
        "comment": comment,
        "pull_request": _pull(number),
        "repository": repository(),
        "sender": user(author, 2),
        "installation": {"id": 4242},
    }


def review(
    state: str = "approved",
    *,
    number: int = 12,
    action: str = "submitted",
    author: str = "maintainer",
    body: str | None = "Looks good",
) -> dict[str, Any]:
    return {
        "action": action,
        "review": {
            "id": 8001,
            "node_id": "PRR_kwDOA",
            "user": user(author, 2),
            "body": body,
            "state": state,
            "commit_id": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
            "html_url": f"https://github.com/octo-org/hello-world/pull/{number}#pullrequestreview-8001",
            "submitted_at": "2026-11-21T10:05:00Z",
            "author_association": "MEMBER",
        },
        "pull_request": _pull(number),
        "repository": repository(),
        "sender": user(author, 2),
        "installation": {"id": 4242},
    }


def issues_event(
    action: str = "labeled", *, number: int = 7, label: str | None = "threadline"
) -> dict[str, Any]:
    issue = _issue(number, pull=False)
    payload: dict[str, Any] = {
        "action": action,
        "issue": issue,
        "repository": repository(),
        "sender": user("maintainer", 2),
        "installation": {"id": 4242},
    }
    if label is not None:
        issue["labels"] = [{"id": 1, "name": label, "color": "ededed"}]
        payload["label"] = {"id": 1, "name": label, "color": "ededed"}
    return payload


def installation_event(action: str = "created") -> dict[str, Any]:
    return {
        "action": action,
        "installation": {
            "id": 4242,
            "account": user("octo-org", 9919, "Organization"),
            "repository_selection": "selected",
            "app_id": 1234,
            "target_type": "Organization",
            "permissions": {"issues": "write", "pull_requests": "write", "metadata": "read"},
            "events": ["issue_comment", "pull_request_review_comment"],
        },
        "repositories": [
            {
                "id": 1296269,
                "name": "hello-world",
                "full_name": "octo-org/hello-world",
                "private": False,
            }
        ],
        "sender": user("maintainer", 2),
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode("utf-8")


def github_headers(
    event: str, body: bytes, *, secret: str = SECRET, delivery: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc123",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": sign_github(body, secret),
    }


def gitlab_headers(
    event: str, *, token: str = GITLAB_TOKEN, idempotency_key: str | None = "random"
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.5.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Instance": "https://gitlab.example.com",
        "X-Gitlab-Webhook-UUID": "cb2f4ac0-0c2a-4f5e-8d7c-5d1a6ab1c001",
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
    }
    if idempotency_key is not None:
        headers["Idempotency-Key"] = (
            str(uuid.uuid4()) if idempotency_key == "random" else idempotency_key
        )
    return headers


def rsa_private_key_pem() -> str:
    """A fresh 2048-bit RSA key in PEM, as GitHub hands out App keys."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")
