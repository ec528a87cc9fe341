"""Real-size webhook bodies for bench/ingress.py: what GitHub and GitLab actually send.

bench/ingress.py's own `issue_comment` bodies (3-6 KB) leave out most of what a real
delivery carries. A real one is 10-30 KB: GitHub sends the whole repository object
(about 90 fields, most of them API URL templates), full user objects for the
commenter, the issue's author and the owner, the issue with its body, labels and
reactions, and the comment. GitHub's documented `issue_comment` example is about
14 KB. GitLab's hooks are smaller; its merge request and note hooks are taken here
from GitLab's own documented examples (tests/fixtures/gitlab/docs, SOURCES.md there),
with fresh ids and a note or description of a realistic length.

Each body is a `Body`: the path it is posted to, the headers that do not change
between sends (the signature or token among them), the header that carries the
delivery id (a fresh one per send), and the bytes.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.ingress.verify import sign_github

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gitlab" / "docs"


@dataclass(frozen=True)
class Body:
    kind: str  # "github issue_comment", "gitlab Note Hook", ...
    path: str
    headers: tuple[tuple[str, str], ...]
    delivery_header: str
    body: bytes


_WORDS = (
    *("the", "retry", "loop", "still", "drops", "the", "lease", "when", "the", "worker"),
    *("restarts", "so", "please", "check", "handler", "session", "thread", "review"),
    *("migration", "schema", "queue", "commit", "delivery", "payload", "could", "you"),
    *("take", "a", "look", "at", "this", "before", "the", "release", "we", "saw", "it"),
    *("twice", "in", "staging", "logs", "show", "a", "timeout", "after", "the", "first"),
    *("attempt", "and", "then", "nothing", "`ValueError`", "```", "traceback:", "line"),
)
_LOGINS = ("octocat", "mona", "hubot-fan", "ada-l", "grace-h", "linus-t", "ken-t", "barbara-l")


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
        if rng.random() < 0.08:
            words.append("\r\n\r\n")
    return " ".join(words)[:size]


def github_user(login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
    """A user object as GitHub puts it in webhook payloads (every field)."""
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": f"MDQ6VXNlcj{user_id:08d}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def _reactions(url: str, rng: random.Random) -> dict[str, Any]:
    counts = {k: rng.choice((0, 0, 0, 1, 2)) for k in ("+1", "-1", "laugh", "hooray")}
    counts |= {k: rng.choice((0, 0, 1)) for k in ("confused", "heart", "rocket", "eyes")}
    return {"url": f"{url}/reactions", "total_count": sum(counts.values()), **counts}


_REPO_URLS = (
    ("forks_url", "/forks"),
    ("keys_url", "/keys{/key_id}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("teams_url", "/teams"),
    ("hooks_url", "/hooks"),
    ("issue_events_url", "/issues/events{/number}"),
    ("events_url", "/events"),
    ("assignees_url", "/assignees{/user}"),
    ("branches_url", "/branches{/branch}"),
    ("tags_url", "/tags"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("trees_url", "/git/trees{/sha}"),
    ("statuses_url", "/statuses/{sha}"),
    ("languages_url", "/languages"),
    ("stargazers_url", "/stargazers"),
    ("contributors_url", "/contributors"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("commits_url", "/commits{/sha}"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("comments_url", "/comments{/number}"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("contents_url", "/contents/{+path}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("merges_url", "/merges"),
    ("archive_url", "/{archive_format}{/ref}"),
    ("downloads_url", "/downloads"),
    ("issues_url", "/issues{/number}"),
    ("pulls_url", "/pulls{/number}"),
    ("milestones_url", "/milestones{/number}"),
    ("notifications_url", "/notifications{?since,all,participating}"),
    ("labels_url", "/labels{/name}"),
    ("releases_url", "/releases{/id}"),
    ("deployments_url", "/deployments"),
)


def _repository(owner: dict[str, Any], name: str, stamp: str) -> dict[str, Any]:
    full = f"{owner['login']}/{name}"
    api = f"https://api.github.com/repos/{full}"
    repo: dict[str, Any] = {
        "id": 812_345_678,
        "node_id": "R_kgDOMGRpXg",
        "name": name,
        "full_name": full,
        "private": False,
        "owner": owner,
        "html_url": f"https://github.com/{full}",
        "description": "Widgets, made to order, with a queue that never loses one",
        "fork": False,
        "url": api,
    }
    repo |= {key: api + tail for key, tail in _REPO_URLS}
    repo |= {
        "created_at": "2024-06-11T08:12:40Z",
        "updated_at": stamp,
        "pushed_at": stamp,
        "git_url": f"git://github.com/{full}.git",
        "ssh_url": f"git@github.com:{full}.git",
        "clone_url": f"https://github.com/{full}.git",
        "svn_url": f"https://github.com/{full}",
        "homepage": "https://widgets.example.com",
        "size": 48_213,
        "stargazers_count": 1_204,
        "watchers_count": 1_204,
        "language": "Python",
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": False,
        "has_pages": False,
        "has_discussions": True,
        "forks_count": 87,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": 142,
        "license": {
            "key": "apache-2.0",
            "name": "Apache License 2.0",
            "spdx_id": "Apache-2.0",
            "url": "https://api.github.com/licenses/apache-2.0",
            "node_id": "MDc6TGljZW5zZTI=",
        },
        "allow_forking": True,
        "is_template": False,
        "web_commit_signoff_required": False,
        "topics": ["chat-ops", "code-review", "bots", "webhooks"],
        "visibility": "public",
        "forks": 87,
        "open_issues": 142,
        "watchers": 1_204,
        "default_branch": "main",
        "custom_properties": {},
    }
    return repo


def _label(rng: random.Random, api: str) -> dict[str, Any]:
    name = rng.choice(("bug", "needs-review", "area/queue", "priority/high", "good first issue"))
    return {
        "id": rng.randint(10**9, 9 * 10**9),
        "node_id": f"LA_kwDOMGRpXs8AAAAB{rng.randint(10**6, 9 * 10**6)}",
        "url": f"{api}/labels/{name.replace(' ', '%20')}",
        "name": name,
        "color": f"{rng.randint(0, 0xFFFFFF):06x}",
        "default": name == "bug",
        "description": "Something is not working as documented",
    }


def github_issue_comment(
    rng: random.Random,
    n: int,
    *,
    number: int | None = None,
    mention: bool = True,
    stamp: str | None = None,
) -> bytes:
    """An `issue_comment` `created` delivery with every field GitHub sends (10-30 KB):
    comment `n` on issue `number` (default a random one), addressed to the bot if
    `mention`, else a plain comment that only joins the thread's history; written at
    `stamp` (ISO 8601, default a random time in November 2026)."""
    owner = github_user("acme", 9_100_001, "Organization")
    commenter = github_user(rng.choice(_LOGINS), rng.randint(10_000, 9_999_999))
    author = github_user(rng.choice(_LOGINS), rng.randint(10_000, 9_999_999))
    stamp = stamp or (
        f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:07Z"
    )
    repository = _repository(owner, "widgets", stamp)
    api = repository["url"]
    number = number or rng.randint(1, 4000)
    issue_url = f"{api}/issues/{number}"
    comment_id = 2_400_000_000 + n
    comment_url = f"{api}/issues/comments/{comment_id}"
    html = f"{repository['html_url']}/issues/{number}"
    issue: dict[str, Any] = {
        "url": issue_url,
        "repository_url": api,
        "labels_url": f"{issue_url}/labels{{/name}}",
        "comments_url": f"{issue_url}/comments",
        "events_url": f"{issue_url}/events",
        "html_url": html,
        "id": 3_100_000_000 + number,
        "node_id": f"I_kwDOAbCdEf{number:06d}",
        "number": number,
        "title": _text(rng, rng.randint(30, 90)),
        "user": author,
        "labels": [_label(rng, api) for _ in range(rng.randint(0, 3))],
        "state": "open",
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": rng.randint(0, 40),
        "created_at": stamp,
        "updated_at": stamp,
        "closed_at": None,
        "author_association": "MEMBER",
        "type": None,
        "active_lock_reason": None,
        "sub_issues_summary": {"total": 0, "completed": 0, "percent_completed": 0},
        "issue_dependencies_summary": {"blocked_by": 0, "total_blocked_by": 0, "blocking": 0},
        "body": "",
        "reactions": _reactions(issue_url, rng),
        "timeline_url": f"{issue_url}/timeline",
        "performed_via_github_app": None,
        "state_reason": None,
    }
    if rng.random() < 0.5:  # a comment on a pull request: GitHub adds the PR's links
        pulls = f"{api}/pulls/{number}"
        issue["pull_request"] = {
            "url": pulls,
            "html_url": f"{repository['html_url']}/pull/{number}",
            "diff_url": f"{repository['html_url']}/pull/{number}.diff",
            "patch_url": f"{repository['html_url']}/pull/{number}.patch",
            "merged_at": None,
        }
        issue["draft"] = False
    comment = {
        "url": comment_url,
        "html_url": f"{html}#issuecomment-{comment_id}",
        "issue_url": issue_url,
        "id": comment_id,
        "node_id": f"IC_kwDOAbCdEf{comment_id}",
        "user": commenter,
        "created_at": stamp,
        "updated_at": stamp,
        "body": "",
        "author_association": "CONTRIBUTOR",
        "reactions": _reactions(comment_url, rng),
        "performed_via_github_app": None,
    }
    payload = {
        "action": "created",
        "issue": issue,
        "comment": comment,
        "repository": repository,
        "organization": {
            "login": "acme",
            "id": 9_100_001,
            "node_id": "O_kgDOAIuLoQ",
            "url": "https://api.github.com/orgs/acme",
            "repos_url": "https://api.github.com/orgs/acme/repos",
            "events_url": "https://api.github.com/orgs/acme/events",
            "hooks_url": "https://api.github.com/orgs/acme/hooks",
            "issues_url": "https://api.github.com/orgs/acme/issues",
            "members_url": "https://api.github.com/orgs/acme/members{/member}",
            "public_members_url": "https://api.github.com/orgs/acme/public_members{/member}",
            "avatar_url": "https://avatars.githubusercontent.com/u/9100001?v=4",
            "description": "Makers of widgets",
        },
        "sender": commenter,
        "installation": {"id": 51_234_567, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNTE="},
    }
    # Sizes: most deliveries 11-16 KB (GitHub's example is about 14 KB), a tail to 30 KB
    # (a long issue body or a comment quoting a log).
    empty = len(json.dumps(payload, separators=(",", ":")))
    target = int(min(30_000, max(10_500, rng.lognormvariate(9.55, 0.25))))
    spare = max(target - empty, 200)
    issue["body"] = _text(rng, int(spare * 0.6))
    comment["body"] = ("@threadline " if mention else "") + _text(
        rng, spare - int(spare * 0.6) - 12
    )
    return json.dumps(payload, separators=(",", ":")).encode()


def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def gitlab_note(template: dict[str, Any], rng: random.Random, n: int) -> bytes:
    """A merge request `Note Hook` (GitLab's documented example) with a fresh note."""
    data = copy.deepcopy(template)
    attributes = data["object_attributes"]
    attributes["id"] = 100_000 + n
    attributes["note"] = "@threadline " + _text(rng, rng.randint(40, 2500))
    attributes["url"] = attributes["url"].rsplit("#", 1)[0] + f"#note_{100_000 + n}"
    return json.dumps(data, separators=(",", ":")).encode()


def gitlab_merge_request(template: dict[str, Any], rng: random.Random, n: int) -> bytes:
    """A `Merge Request Hook` (GitLab's documented `open` example) with a fresh id and
    a description of a realistic length."""
    data = copy.deepcopy(template)
    attributes = data["object_attributes"]
    attributes["id"] = 200_000 + n
    attributes["iid"] = 1 + n
    attributes["description"] = _text(rng, rng.randint(200, 4000))
    return json.dumps(data, separators=(",", ":")).encode()


GITHUB_HEADERS = (
    ("Content-Type", "application/json"),
    ("User-Agent", "GitHub-Hookshot/bench"),
    ("X-GitHub-Event", "issue_comment"),
    ("X-GitHub-Hook-ID", "512345678"),
    ("X-GitHub-Hook-Installation-Target-ID", "1234567"),
    ("X-GitHub-Hook-Installation-Target-Type", "integration"),
)


def github_body(body: bytes, secret: str, kind: str = "github issue_comment") -> Body:
    headers = (*GITHUB_HEADERS, ("X-Hub-Signature-256", sign_github(body, secret)))
    return Body(kind, "/webhooks/github", headers, "X-GitHub-Delivery", body)


def gitlab_body(body: bytes, token: str, event: str) -> Body:
    headers = (
        ("Content-Type", "application/json"),
        ("User-Agent", "GitLab/17.6.0"),
        ("X-Gitlab-Event", event),
        ("X-Gitlab-Instance", "https://gitlab.example.com"),
        ("X-Gitlab-Webhook-UUID", "2c3f1f0e-5b83-4a5e-9a57-6a1c3b0e7f11"),
        ("X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e"),
        ("X-Gitlab-Token", token),
    )
    return Body(f"gitlab {event}", "/webhooks/gitlab", headers, "Idempotency-Key", body)


def real_bodies(count: int, seed: int, secret: str) -> list[Body]:
    """`count` real-size deliveries: two in three GitHub `issue_comment`, then GitLab
    note hooks and merge request hooks, one in six each, interleaved."""
    rng = random.Random(seed)
    note = _fixture("note_hook.merge_request.json")
    merge = _fixture("merge_request_hook.open.json")
    bodies = []
    for n in range(count):
        slot = n % 6
        if slot == 4:
            bodies.append(gitlab_body(gitlab_note(note, rng, n), secret, "Note Hook"))
        elif slot == 5:
            raw = gitlab_merge_request(merge, rng, n)
            bodies.append(gitlab_body(raw, secret, "Merge Request Hook"))
        else:
            bodies.append(github_body(github_issue_comment(rng, n), secret))
    return bodies
