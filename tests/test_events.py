"""bot.events: GitHub and GitLab payloads into host-neutral events, and which events to drop."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.events import (
    Actor,
    CommentEvent,
    Event,
    Ignored,
    InstallationEvent,
    IssueEvent,
    PayloadError,
    PullRequestEvent,
    ReviewEvent,
    ReviewThreadEvent,
    ThreadRef,
    drop_reason,
    event_time,
    normalize,
    normalize_github,
    normalize_gitlab,
    order_key,
)
from tests import payloads as p

REPO = "octo-org/hello-world"
HEAD = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
BASE = "9b2f7f8e3c1d4a5b6c7d8e9f0a1b2c3d4e5f6a7b"
MAINTAINER = Actor("maintainer", 2, False)


def gh(event: str, data: dict[str, Any]) -> Event:
    result = normalize_github(event, data)
    assert isinstance(result, Event), result
    assert normalize("github", event, data) == result
    return result


def gl(fixture: str | dict[str, Any], event: str | None = None) -> Event:
    data = p.gitlab_fixture(fixture) if isinstance(fixture, str) else fixture
    header = event or (p.GITLAB_FIXTURES[fixture] if isinstance(fixture, str) else "Note Hook")
    result = normalize_gitlab(header, data)
    assert isinstance(result, Event), result
    assert normalize("gitlab", header, data) == result
    return result


# ---------------------------------------------------------------- ThreadRef


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        (ThreadRef("github", REPO, "issue", 7), "github:octo-org/hello-world/issues/7"),
        (ThreadRef("github", REPO, "pull", 7), "github:octo-org/hello-world/pulls/7"),
        (
            ThreadRef("github", REPO, "pull", 12, "7001"),
            "github:octo-org/hello-world/pulls/12/threads/7001",
        ),
        (ThreadRef("gitlab", "group/sub/proj", "pull", 3), "gitlab:group/sub/proj/pulls/3"),
        (
            ThreadRef("gitlab", "group/sub/proj", "issue", 3, "abc"),
            "gitlab:group/sub/proj/issues/3/threads/abc",
        ),
        (ThreadRef("gitlab", "g/p", "pull", 3, ""), "gitlab:g/p/pulls/3"),
    ],
)
def test_thread_key(ref: ThreadRef, key: str) -> None:
    assert ref.key == key


def test_thread_conversation_drops_the_thread_id() -> None:
    ref = ThreadRef("github", REPO, "pull", 12, "7001")
    assert ref.conversation == ThreadRef("github", REPO, "pull", 12)
    assert ref.conversation.key == "github:octo-org/hello-world/pulls/12"


# ---------------------------------------------------------------- GitHub


def test_github_issue_comment_on_an_issue() -> None:
    event = gh("issue_comment", p.issue_comment("@threadline review this", number=7))
    assert event == CommentEvent(
        host="github",
        repo=REPO,
        actor=MAINTAINER,
        action="created",
        installation_id=4242,
        thread=ThreadRef("github", REPO, "issue", 7),
        comment_id="5001",
        body="@threadline review this",
        url="https://github.com/octo-org/hello-world/issues/7#issuecomment-5001",
    )
    assert event.thread.key == "github:octo-org/hello-world/issues/7"


def test_github_issue_comment_on_a_pull_request_lives_in_the_pull_thread() -> None:
    event = gh("issue_comment", p.issue_comment(number=7, pull=True))
    assert isinstance(event, CommentEvent)
    assert event.thread == ThreadRef("github", REPO, "pull", 7)
    assert event.thread.key == "github:octo-org/hello-world/pulls/7"


@pytest.mark.parametrize("action", ["created", "edited", "deleted"])
def test_github_comment_actions_are_carried_through(action: str) -> None:
    issue = gh("issue_comment", p.issue_comment(action=action))
    review = gh("pull_request_review_comment", p.review_comment(action=action))
    assert issue.action == review.action == action


def test_github_review_comment_top_level_names_its_own_thread() -> None:
    event = gh("pull_request_review_comment", p.review_comment(number=12, comment_id=7001))
    assert isinstance(event, CommentEvent)
    assert event.thread == ThreadRef("github", REPO, "pull", 12, "7001")
    assert event.thread.key == "github:octo-org/hello-world/pulls/12/threads/7001"
    assert event.comment_id == "7001"
    assert event.in_reply_to is None
    assert (event.path, event.line) == ("src/retry.py", 45)
    assert event.url == "https://github.com/octo-org/hello-world/pull/12#discussion_r7001"


def test_github_review_comment_reply_shares_its_roots_thread() -> None:
    root = gh("pull_request_review_comment", p.review_comment(comment_id=7001))
    reply = gh(
        "pull_request_review_comment",
        p.review_comment("done", comment_id=7002, in_reply_to=7001),
    )
    assert isinstance(root, CommentEvent)
    assert isinstance(reply, CommentEvent)
    assert reply.comment_id == "7002"
    assert reply.in_reply_to == "7001"
    assert reply.thread.thread_id == "7001"
    assert reply.thread.key == root.thread.key
    assert reply.thread.conversation == root.thread.conversation
    assert (reply.path, reply.line) == ("src/retry.py", 45)


@pytest.mark.parametrize(
    ("line", "original_line", "expected"),
    [(45, 40, 45), (None, 40, 40), (None, None, None), ("45", None, None)],
)
def test_github_review_comment_line_falls_back_to_original_line(
    line: object, original_line: object, expected: int | None
) -> None:
    data = p.review_comment()
    data["comment"]["line"] = line
    data["comment"]["original_line"] = original_line
    event = gh("pull_request_review_comment", data)
    assert isinstance(event, CommentEvent)
    assert event.line == expected


@pytest.mark.parametrize(
    ("side", "expected"), [("RIGHT", "RIGHT"), ("LEFT", "LEFT"), (None, "RIGHT")]
)
def test_github_review_comment_on_a_deleted_line_is_on_the_left(
    side: str | None, expected: str
) -> None:
    data = p.review_comment()
    data["comment"]["side"] = side
    event = gh("pull_request_review_comment", data)
    assert isinstance(event, CommentEvent)
    assert event.side == expected
    conversation = gh("issue_comment", p.issue_comment("hello"))
    assert isinstance(conversation, CommentEvent)
    assert conversation.side is None, "a conversation comment is on no diff line"


@pytest.mark.parametrize(
    ("state", "action", "expected"),
    [
        ("approved", "submitted", "approved"),
        ("changes_requested", "submitted", "changes_requested"),
        ("commented", "submitted", "commented"),
        ("APPROVED", "submitted", "approved"),
        ("approved", "dismissed", "dismissed"),
        ("changes_requested", "dismissed", "dismissed"),
        ("dismissed", "dismissed", "dismissed"),
    ],
)
def test_github_review_state(state: str, action: str, expected: str) -> None:
    event = gh("pull_request_review", p.review(state, number=12, action=action))
    assert isinstance(event, ReviewEvent)
    assert event.state == expected
    assert event.action == action
    assert event.thread == ThreadRef("github", REPO, "pull", 12)
    assert event.review_id == "8001"
    assert event.commit_id == HEAD
    assert event.body == "Looks good"


def test_github_review_without_body_has_an_empty_body() -> None:
    event = gh("pull_request_review", p.review(body=None))
    assert isinstance(event, ReviewEvent)
    assert event.body == ""


def test_github_issues_labeled() -> None:
    event = gh("issues", p.issues_event("labeled", number=7, label="threadline"))
    assert event == IssueEvent(
        host="github",
        repo=REPO,
        actor=MAINTAINER,
        action="labeled",
        installation_id=4242,
        thread=ThreadRef("github", REPO, "issue", 7),
        title="Retry logic drops errors",
        body="The retry loop swallows the last error.",
        labels=("threadline",),
        label="threadline",
        url="https://github.com/octo-org/hello-world/issues/7",
    )


def test_github_issues_assigned_names_the_assignee() -> None:
    data = p.issues_event("assigned", label=None)
    data["assignee"] = p.user("helper", 5)
    data["issue"]["assignees"] = [p.user("helper", 5)]
    event = gh("issues", data)
    assert isinstance(event, IssueEvent)
    assert (event.action, event.assignee, event.assignees) == ("assigned", "helper", ("helper",))
    assert event.label is None


def test_github_pull_request() -> None:
    data = {
        "action": "synchronize",
        "number": 12,
        "before": BASE,
        "after": HEAD,
        "pull_request": p.review_comment(number=12)["pull_request"],
        "repository": p.repository(),
        "sender": p.user("contributor", 3),
        "installation": {"id": 4242},
    }
    event = gh("pull_request", data)
    assert event == PullRequestEvent(
        host="github",
        repo=REPO,
        actor=Actor("contributor", 3, False),
        action="synchronize",
        installation_id=4242,
        thread=ThreadRef("github", REPO, "pull", 12),
        title="Make retries keep the last error",
        body="Fixes #7",
        head_sha=HEAD,
        base_sha=BASE,
        url="https://github.com/octo-org/hello-world/pull/12",
    )


def test_github_review_thread_resolved_names_the_root_comment() -> None:
    comment = p.review_comment(comment_id=7002, in_reply_to=7001)["comment"]
    data = {
        "action": "resolved",
        "thread": {"node_id": "PRRT_kwDOA", "comments": [comment]},
        "pull_request": p.review_comment(number=12)["pull_request"],
        "repository": p.repository(),
        "sender": p.user("maintainer", 2),
        "installation": {"id": 4242},
    }
    event = gh("pull_request_review_thread", data)
    assert isinstance(event, ReviewThreadEvent)
    assert event.action == "resolved"
    assert event.thread.key == "github:octo-org/hello-world/pulls/12/threads/7001"
    data["thread"]["comments"] = []
    assert normalize_github("pull_request_review_thread", data) == Ignored(
        "review thread event without comments"
    )


def test_github_installation_created() -> None:
    event = gh("installation", p.installation_event("created"))
    assert event == InstallationEvent(
        host="github",
        repo="",
        actor=MAINTAINER,
        action="created",
        installation_id=4242,
        account="octo-org",
        repositories_added=(REPO,),
        repositories_removed=(),
    )


def test_github_installation_deleted_adds_no_repositories() -> None:
    event = gh("installation", p.installation_event("deleted"))
    assert isinstance(event, InstallationEvent)
    assert event.action == "deleted"
    assert event.installation_id == 4242
    assert event.repositories_added == ()


def _installation_repositories(action: str) -> dict[str, Any]:
    data = p.installation_event(action)
    del data["repositories"]
    data["repository_selection"] = "selected"
    data["repositories_added"] = (
        [{"id": 1, "full_name": "octo-org/new-one"}, {"id": 2, "full_name": "octo-org/new-two"}]
        if action == "added"
        else []
    )
    data["repositories_removed"] = (
        [{"id": 3, "full_name": "octo-org/old-one"}] if action == "removed" else []
    )
    return data


@pytest.mark.parametrize(
    ("action", "added", "removed"),
    [
        ("added", ("octo-org/new-one", "octo-org/new-two"), ()),
        ("removed", (), ("octo-org/old-one",)),
    ],
)
def test_github_installation_repositories(
    action: str, added: tuple[str, ...], removed: tuple[str, ...]
) -> None:
    event = gh("installation_repositories", _installation_repositories(action))
    assert isinstance(event, InstallationEvent)
    assert (event.action, event.installation_id, event.account) == (action, 4242, "octo-org")
    assert event.repositories_added == added
    assert event.repositories_removed == removed


@pytest.mark.parametrize(
    ("installation", "expected"),
    [({"id": 4242}, 4242), ({"id": 99, "node_id": "x"}, 99), (None, None)],
)
def test_github_installation_id_comes_from_the_payload(
    installation: dict[str, Any] | None, expected: int | None
) -> None:
    data = p.issue_comment()
    if installation is None:
        del data["installation"]
    else:
        data["installation"] = installation
    assert gh("issue_comment", data).installation_id == expected


@pytest.mark.parametrize(
    ("event", "data", "reason"),
    [
        ("ping", {"zen": "Design for failure.", "hook_id": 1}, "ping"),
        ("star", {"action": "created", "repository": p.repository()}, "'star' is not handled"),
        ("push", {"ref": "refs/heads/main", "repository": p.repository()}, "'push'"),
        ("no_such_event", {"repository": p.repository()}, "'no_such_event'"),
    ],
)
def test_github_ignored_events(event: str, data: dict[str, Any], reason: str) -> None:
    result = normalize_github(event, data)
    assert isinstance(result, Ignored)
    assert reason in result.reason


def _without_key(data: dict[str, Any], *path: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


@pytest.mark.parametrize(
    ("event", "data", "message"),
    [
        ("issue_comment", _without_key(p.issue_comment(), "repository"), "repository.full_name"),
        (
            "issue_comment",
            _without_key(p.issue_comment(), "repository", "full_name"),
            "repository.full_name",
        ),
        ("issue_comment", _without_key(p.issue_comment(), "comment"), "comment"),
        ("issue_comment", _without_key(p.issue_comment(), "issue", "number"), "number"),
        ("pull_request_review_comment", _without_key(p.review_comment(), "repository"), "repo"),
        (
            "pull_request_review_comment",
            _without_key(p.review_comment(), "pull_request"),
            "pull_request",
        ),
        ("pull_request_review_comment", _without_key(p.review_comment(), "comment", "id"), "id"),
        ("pull_request_review", _without_key(p.review(), "review"), "review"),
        ("issues", _without_key(p.issues_event(), "issue"), "issue"),
        ("pull_request", {"action": "opened", "repository": p.repository()}, "pull_request"),
        ("installation", _without_key(p.installation_event(), "installation"), "installation"),
    ],
)
def test_github_broken_payload_raises_payload_error(
    event: str, data: dict[str, Any], message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        normalize_github(event, data)
    with pytest.raises(PayloadError):
        normalize("github", event, data)


@pytest.mark.parametrize(
    ("sender", "actor"),
    [
        (p.user("maintainer", 2), Actor("maintainer", 2, False)),
        (p.user("threadline[bot]", 9, "Bot"), Actor("threadline[bot]", 9, True)),
        (p.user("renovate[bot]", 10), Actor("renovate[bot]", 10, True)),
        (p.user("ci", 11, "Bot"), Actor("ci", 11, True)),
        ({"login": "noid"}, Actor("noid", None, False)),
        (None, Actor("ghost")),
    ],
)
def test_github_actor(sender: dict[str, Any] | None, actor: Actor) -> None:
    data = p.issue_comment()
    data["sender"] = sender
    assert gh("issue_comment", data).actor == actor


def test_normalize_refuses_an_unknown_host() -> None:
    with pytest.raises(PayloadError, match="bitbucket"):
        normalize("bitbucket", "issue_comment", p.issue_comment())


# ---------------------------------------------------------------- GitLab

# What each fixture becomes: (event class or Ignored, thread key, action).
GITLAB_EXPECTED: dict[str, tuple[type, str | None, str | None]] = {
    "docs/note_hook.merge_request.json": (
        CommentEvent,
        "gitlab:gitlab-org/gitlab-test/pulls/1",
        "created",
    ),
    "docs/note_hook.issue.json": (
        CommentEvent,
        "gitlab:gitlab-org/gitlab-test/issues/17",
        "created",
    ),
    "docs/issue_hook.open.json": (IssueEvent, "gitlab:gitlabhq/gitlab-test/issues/23", "opened"),
    "docs/merge_request_hook.open.json": (
        PullRequestEvent,
        "gitlab:gitlabhq/gitlab-test/pulls/1",
        "opened",
    ),
    "go-gitlab/note_merge_request.json": (
        CommentEvent,
        "gitlab:gitlab-org/gitlab-test/pulls/1",
        "created",
    ),
    "go-gitlab/note_issue.json": (
        CommentEvent,
        "gitlab:gitlab-org/gitlab-test/issues/17",
        "created",
    ),
    "go-gitlab/note_commit.json": (Ignored, None, None),
    "go-gitlab/note_snippet.json": (Ignored, None, None),
    "go-gitlab/merge_request.json": (
        PullRequestEvent,
        "gitlab:gitlabhq/gitlab-test/pulls/1",
        "opened",
    ),
    "go-gitlab/service_merge_request.json": (
        PullRequestEvent,
        "gitlab:test/woodpecker/pulls/2",
        "synchronize",
    ),
    "go-gitlab/issue.json": (IssueEvent, "gitlab:gitlabhq/gitlab-test/issues/23", "opened"),
    # A group hook whose object_attributes keys are padded with spaces ("iid ": 1402).
    "go-gitlab/group_merge_request.json": (
        PullRequestEvent,
        "gitlab:exm-namespace/example-project/pulls/1402",
        "merged",
    ),
    "go-gitlab/push.json": (Ignored, None, None),
}


def test_every_gitlab_fixture_is_in_the_expectations() -> None:
    assert set(GITLAB_EXPECTED) == set(p.GITLAB_FIXTURES)


@pytest.mark.parametrize(("fixture", "expected"), sorted(GITLAB_EXPECTED.items()))
def test_gitlab_fixture_normalizes(
    fixture: str, expected: tuple[type, str | None, str | None]
) -> None:
    kind, key, action = expected
    data = p.gitlab_fixture(fixture)
    result = normalize("gitlab", p.GITLAB_FIXTURES[fixture], data)
    assert type(result) is kind
    if isinstance(result, Ignored):
        assert result.reason
        return
    assert isinstance(result, CommentEvent | IssueEvent | PullRequestEvent)
    assert result.host == "gitlab"
    assert result.installation_id is None
    assert result.thread.key == key
    assert result.action == action
    assert result.repo == data["project"]["path_with_namespace"]
    assert result.actor.login == data["user"]["username"]


def test_gitlab_merge_request_with_padded_keys_reads_the_trimmed_ones() -> None:
    event = gl("go-gitlab/group_merge_request.json")
    assert isinstance(event, PullRequestEvent)
    assert event.thread.number == 1402
    assert event.title == "source-branch-test "
    assert event.body == "word doc support for e-ticket"
    assert event.head_sha == "61b6a0d35dbaf915760233b637622e383d3cc9ec"
    assert event.url == "http://example.com/exm-namespace/example-project/merge_requests/1402"


@pytest.mark.parametrize(
    ("fixture", "noteable"),
    [("go-gitlab/note_commit.json", "Commit"), ("go-gitlab/note_snippet.json", "Snippet")],
)
def test_gitlab_notes_on_commits_and_snippets_are_ignored(fixture: str, noteable: str) -> None:
    result = normalize_gitlab("Note Hook", p.gitlab_fixture(fixture))
    assert result == Ignored(f"GitLab note on a {noteable} is not handled")


def test_gitlab_push_is_ignored() -> None:
    result = normalize_gitlab("Push Hook", p.gitlab_fixture("go-gitlab/push.json"))
    assert result == Ignored("GitLab event 'Push Hook' is not handled")


def test_gitlab_note_on_a_merge_request() -> None:
    event = gl("docs/note_hook.merge_request.json")
    assert event == CommentEvent(
        host="gitlab",
        repo="gitlab-org/gitlab-test",
        actor=Actor("root", 1, False),
        action="created",
        thread=ThreadRef("gitlab", "gitlab-org/gitlab-test", "pull", 1),
        comment_id="1244",
        body="This MR needs work.",
        url="http://example.com/gitlab-org/gitlab-test/merge_requests/1#note_1244",
    )


def test_gitlab_note_on_an_issue() -> None:
    event = gl("docs/note_hook.issue.json")
    assert isinstance(event, CommentEvent)
    assert event.thread == ThreadRef("gitlab", "gitlab-org/gitlab-test", "issue", 17)
    assert (event.comment_id, event.body) == ("1241", "Hello world")
    assert (event.path, event.line, event.system) == (None, None, False)


def test_gitlab_confidential_note_normalizes_like_a_note() -> None:
    data = p.gitlab_fixture("docs/note_hook.issue.json")
    data["event_type"] = "confidential_note"
    assert gl(data, "Confidential Note Hook") == gl("docs/note_hook.issue.json")


def _note(**attributes: Any) -> dict[str, Any]:
    data = copy.deepcopy(p.gitlab_fixture("docs/note_hook.merge_request.json"))
    data["object_attributes"].update(attributes)
    return data


# https://docs.gitlab.com/api/discussions/#create-a-new-thread-in-the-merge-request-diff
POSITION = {
    "base_sha": "ae73a1c1de3ec3c41f8c4e2d4d2e2a6e6c1a1b2c",
    "start_sha": "ae73a1c1de3ec3c41f8c4e2d4d2e2a6e6c1a1b2c",
    "head_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "position_type": "text",
    "new_path": "src/retry.py",
    "new_line": 45,
    "old_path": "src/retry.py",
    "old_line": None,
}
DIFF_THREAD = "gitlab:gitlab-org/gitlab-test/pulls/1/threads/abc123"


def test_gitlab_diff_note_starts_a_thread_of_its_own() -> None:
    event = gl(_note(type="DiffNote", discussion_id="abc123", position=POSITION))
    assert isinstance(event, CommentEvent)
    assert event.thread == ThreadRef("gitlab", "gitlab-org/gitlab-test", "pull", 1, "abc123")
    assert event.thread.key == DIFF_THREAD
    assert (event.path, event.line) == ("src/retry.py", 45)
    assert event.action == "created"


@pytest.mark.parametrize(
    "reply",
    [
        {"id": 1300, "type": "DiscussionNote", "discussion_id": "abc123", "position": None},
        {"id": 1301, "type": "DiffNote", "discussion_id": "abc123", "position": POSITION},
    ],
    ids=["DiscussionNote", "DiffNote"],
)
def test_gitlab_reply_in_a_discussion_shares_its_thread(reply: dict[str, Any]) -> None:
    root = gl(_note(type="DiffNote", discussion_id="abc123", position=POSITION))
    event = gl(_note(note="fixed in the next commit", **reply))
    assert isinstance(event, CommentEvent)
    assert isinstance(root, CommentEvent)
    assert event.thread.key == root.thread.key == DIFF_THREAD
    assert event.comment_id == str(reply["id"])
    assert event.body == "fixed in the next commit"


def test_gitlab_discussion_in_another_thread_has_another_key() -> None:
    one = gl(_note(type="DiffNote", discussion_id="abc123", position=POSITION))
    two = gl(_note(type="DiffNote", discussion_id="def456", position=POSITION))
    assert isinstance(one, CommentEvent)
    assert isinstance(two, CommentEvent)
    assert one.thread.key != two.thread.key
    assert one.thread.conversation == two.thread.conversation


def test_gitlab_individual_note_with_a_discussion_id_stays_in_the_conversation() -> None:
    # GitLab gives every note a discussion_id; only DiffNote/DiscussionNote start threads.
    event = gl(_note(type=None, discussion_id="e1c5835f5f99414806f6fe45b28s48cfebb89ee1"))
    assert isinstance(event, CommentEvent)
    assert event.thread.key == "gitlab:gitlab-org/gitlab-test/pulls/1"


@pytest.mark.parametrize(
    ("position", "path", "line", "side"),
    [
        (POSITION, "src/retry.py", 45, "RIGHT"),
        ({**POSITION, "new_line": None, "old_line": 30}, "src/retry.py", 30, "LEFT"),
        (
            {
                **POSITION,
                "new_path": None,
                "old_path": "src/old.py",
                "new_line": None,
                "old_line": 9,
            },
            "src/old.py",
            9,
            "LEFT",
        ),
        ({**POSITION, "new_line": None, "old_line": None}, "src/retry.py", None, None),
        ("not a mapping", None, None, None),
    ],
)
def test_gitlab_diff_note_position_falls_back_to_the_old_side(
    position: object, path: str | None, line: int | None, side: str | None
) -> None:
    event = gl(_note(type="DiffNote", discussion_id="abc123", position=position))
    assert isinstance(event, CommentEvent)
    assert (event.path, event.line, event.side) == (path, line, side)


def test_gitlab_system_note() -> None:
    event = gl(_note(system=True, note="added 1 commit"))
    assert isinstance(event, CommentEvent)
    assert event.system is True
    assert drop_reason(event, ("threadline",)) == "GitLab system note"


@pytest.mark.parametrize(("raw", "action"), [("update", "edited"), (None, "created")])
def test_gitlab_note_actions(raw: str | None, action: str) -> None:
    assert gl(_note(action=raw)).action == action


@pytest.mark.parametrize(
    "data",
    [
        _without_key(p.gitlab_fixture("docs/note_hook.merge_request.json"), "project"),
        _without_key(p.gitlab_fixture("docs/note_hook.merge_request.json"), "object_attributes"),
        _without_key(p.gitlab_fixture("docs/note_hook.merge_request.json"), "merge_request"),
        _without_key(p.gitlab_fixture("docs/note_hook.issue.json"), "issue", "iid"),
        _without_key(p.gitlab_fixture("docs/note_hook.issue.json"), "object_attributes", "id"),
        _without_key(p.gitlab_fixture("docs/issue_hook.open.json"), "object_attributes", "iid"),
    ],
)
def test_gitlab_broken_payload_raises_payload_error(data: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        normalize("gitlab", "Note Hook", data)


def _issue_update(changes: dict[str, Any], **top: Any) -> dict[str, Any]:
    data = copy.deepcopy(p.gitlab_fixture("docs/issue_hook.open.json"))
    data["object_attributes"]["action"] = "update"
    data["changes"] = changes
    data.update(top)
    return data


API = {"id": 206, "title": "API", "color": "#ffffff", "type": "ProjectLabel"}
THREADLINE = {"id": 207, "title": "threadline", "color": "#123123", "type": "ProjectLabel"}
USER1 = {"id": 51, "name": "User1", "username": "user1"}
HELPER = {"id": 52, "name": "Helper", "username": "helper"}


@pytest.mark.parametrize(
    ("data", "action", "label", "assignee"),
    [
        pytest.param(
            _issue_update(
                {"labels": {"previous": [API], "current": [API, THREADLINE]}},
                labels=[API, THREADLINE],
            ),
            "labeled",
            "threadline",
            None,
            id="label added",
        ),
        pytest.param(
            _issue_update(
                {"labels": {"previous": [API, THREADLINE], "current": [API]}}, labels=[API]
            ),
            "edited",
            None,
            None,
            id="label removed",
        ),
        pytest.param(
            _issue_update(
                {"assignees": {"previous": [USER1], "current": [USER1, HELPER]}},
                assignees=[USER1, HELPER],
            ),
            "assigned",
            None,
            "helper",
            id="assignee added",
        ),
        pytest.param(
            _issue_update(
                {
                    "labels": {"previous": [API], "current": [API]},
                    "assignees": {"previous": [], "current": [HELPER]},
                },
                assignees=[HELPER],
            ),
            "assigned",
            None,
            "helper",
            id="labels unchanged, assignee added",
        ),
        pytest.param(
            _issue_update({"title": {"previous": "Old", "current": "New"}}),
            "edited",
            None,
            None,
            id="title edited",
        ),
        pytest.param(_issue_update({}), "edited", None, None, id="no changes"),
    ],
)
def test_gitlab_issue_update(
    data: dict[str, Any], action: str, label: str | None, assignee: str | None
) -> None:
    event = gl(data, "Issue Hook")
    assert isinstance(event, IssueEvent)
    assert (event.action, event.label, event.assignee) == (action, label, assignee)
    assert event.labels == tuple(lb["title"] for lb in data["labels"])
    assert event.assignees == tuple(a["username"] for a in data["assignees"])


def test_gitlab_issue_opened() -> None:
    event = gl("docs/issue_hook.open.json")
    assert event == IssueEvent(
        host="gitlab",
        repo="gitlabhq/gitlab-test",
        actor=Actor("root", 1, False),
        action="opened",
        thread=ThreadRef("gitlab", "gitlabhq/gitlab-test", "issue", 23),
        title="New API: create/update/delete file",
        body="Create new API for manipulations with repository",
        labels=("API",),
        assignees=("user1",),
        url="http://example.com/diaspora/issues/23",
    )


@pytest.mark.parametrize(
    ("raw", "action"),
    [("close", "closed"), ("reopen", "reopened"), ("open", "opened"), ("something", "something")],
)
def test_gitlab_issue_actions(raw: str, action: str) -> None:
    data = p.gitlab_fixture("docs/issue_hook.open.json")
    data["object_attributes"]["action"] = raw
    assert gl(data, "Issue Hook").action == action


def _mr(action: str, **attributes: Any) -> dict[str, Any]:
    data = copy.deepcopy(p.gitlab_fixture("docs/merge_request_hook.open.json"))
    data["object_attributes"]["action"] = action
    data["object_attributes"].update(attributes)
    return data


def test_gitlab_merge_request_opened() -> None:
    event = gl("docs/merge_request_hook.open.json")
    assert event == PullRequestEvent(
        host="gitlab",
        repo="gitlabhq/gitlab-test",
        actor=Actor("root", 1, False),
        action="opened",
        thread=ThreadRef("gitlab", "gitlabhq/gitlab-test", "pull", 1),
        title="MS-Viewport",
        body="",
        head_sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        url="http://example.com/diaspora/merge_requests/1",
    )


@pytest.mark.parametrize(
    ("data", "action"),
    [
        (_mr("merge"), "merged"),
        (_mr("close"), "closed"),
        (_mr("reopen"), "reopened"),
        (_mr("update"), "edited"),
        (_mr("update", oldrev=None), "edited"),
        (_mr("update", oldrev="6ef047571374c96a2bf13c361efd1fb008b0063e"), "synchronize"),
        (_mr("open", oldrev="6ef047571374c96a2bf13c361efd1fb008b0063e"), "opened"),
    ],
)
def test_gitlab_merge_request_actions(data: dict[str, Any], action: str) -> None:
    event = gl(data, "Merge Request Hook")
    assert isinstance(event, PullRequestEvent)
    assert event.action == action
    assert event.thread.key == "gitlab:gitlabhq/gitlab-test/pulls/1"


def test_gitlab_merge_request_update_without_oldrev_is_edited() -> None:
    data = p.gitlab_fixture("go-gitlab/service_merge_request.json")
    del data["object_attributes"]["oldrev"]
    assert gl(data, "Merge Request Hook").action == "edited"


@pytest.mark.parametrize(
    ("raw", "action", "state"),
    [("approval", "submitted", "approved"), ("unapproval", "dismissed", "unapproved")],
)
def test_gitlab_merge_request_approval_is_a_review(raw: str, action: str, state: str) -> None:
    event = gl(_mr(raw), "Merge Request Hook")
    assert event == ReviewEvent(
        host="gitlab",
        repo="gitlabhq/gitlab-test",
        actor=Actor("root", 1, False),
        action=action,
        thread=ThreadRef("gitlab", "gitlabhq/gitlab-test", "pull", 1),
        review_id=None,
        state=state,
        commit_id="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        url="http://example.com/diaspora/merge_requests/1",
    )


@pytest.mark.parametrize(
    ("user", "actor"),
    [
        ({"id": 1, "username": "root"}, Actor("root", 1, False)),
        (
            {"id": 77, "username": "project_123_bot_abcdef"},
            Actor("project_123_bot_abcdef", 77, True),
        ),
        ({"id": 78, "username": "group_42_bot_0a1b2c3d"}, Actor("group_42_bot_0a1b2c3d", 78, True)),
        ({"id": 79, "username": "project_123_bot"}, Actor("project_123_bot", 79, True)),
        ({"id": 80, "username": "projectlead"}, Actor("projectlead", 80, False)),
        ({"id": 81, "username": "ci-helper", "bot": True}, Actor("ci-helper", 81, True)),
        ({"username": "noid"}, Actor("noid", None, False)),
        (None, Actor("ghost")),
    ],
)
def test_gitlab_actor(user: dict[str, Any] | None, actor: Actor) -> None:
    data = p.gitlab_fixture("docs/note_hook.issue.json")
    data["user"] = user
    assert gl(data).actor == actor


@pytest.mark.parametrize("username", ["project_botanist", "group_bot_fans"])
def test_gitlab_people_whose_names_merely_resemble_token_bots_are_not_bots(
    username: str,
) -> None:
    data = p.gitlab_fixture("docs/note_hook.issue.json")
    data["user"] = {"id": 90, "username": username}
    assert gl(data).actor.is_bot is False


# ---------------------------------------------------------------- drop_reason

BOT_NAMES = ("threadline",)


def _comment_by(login: str, kind: str = "User") -> Event:
    return gh("issue_comment", p.issue_comment(author=login, author_type=kind))


def _gitlab_note_by(username: str) -> Event:
    data = p.gitlab_fixture("docs/note_hook.merge_request.json")
    data["user"] = {"id": 77, "username": username}
    return gl(data)


def _pull_request_by(login: str, kind: str) -> Event:
    data = {
        "action": "synchronize",
        "pull_request": p.review_comment()["pull_request"],
        "repository": p.repository(),
        "sender": p.user(login, 9, kind),
    }
    return gh("pull_request", data)


def _review_by(login: str, kind: str = "User") -> Event:
    data = p.review()
    data["sender"] = p.user(login, 9, kind)
    return gh("pull_request_review", data)


@pytest.mark.parametrize(
    ("event", "names", "reason"),
    [
        (_comment_by("threadline"), BOT_NAMES, "written by the bot itself (threadline)"),
        (_comment_by("ThreadLine"), BOT_NAMES, "written by the bot itself (ThreadLine)"),
        (_comment_by("threadline"), ("ThreadLine",), "written by the bot itself (threadline)"),
        (
            _comment_by("threadline[bot]", "Bot"),
            BOT_NAMES,
            "written by the bot itself (threadline[bot])",
        ),
        (_comment_by("tl-helper"), ("threadline", "tl-helper"), "written by the bot itself"),
        (_comment_by("dependabot[bot]", "Bot"), BOT_NAMES, "written by a bot account"),
        (_comment_by("renovate[bot]"), BOT_NAMES, "written by a bot account (renovate[bot])"),
        (_comment_by("ci-runner", "Bot"), BOT_NAMES, "written by a bot account (ci-runner)"),
        (_gitlab_note_by("project_123_bot_abcdef"), BOT_NAMES, "written by a bot account"),
        (_gitlab_note_by("threadline"), BOT_NAMES, "written by the bot itself"),
        (_review_by("threadline[bot]", "Bot"), BOT_NAMES, "written by the bot itself"),
        (_review_by("threadline"), BOT_NAMES, "written by the bot itself"),
        (_review_by("sonar[bot]", "Bot"), BOT_NAMES, "written by a bot account"),
        (gl(_note(system=True)), BOT_NAMES, "GitLab system note"),
    ],
)
def test_drop_reason_drops(event: Event, names: tuple[str, ...], reason: str) -> None:
    dropped = drop_reason(event, names)
    assert dropped is not None
    assert dropped.startswith(reason)


@pytest.mark.parametrize(
    ("event", "names"),
    [
        (_comment_by("maintainer"), BOT_NAMES),
        (_comment_by("threadliner"), BOT_NAMES),
        (_comment_by("bot"), BOT_NAMES),
        (_comment_by("threadline"), ("someone-else",)),
        (_comment_by("threadline"), ()),
        (_gitlab_note_by("root"), BOT_NAMES),
        (_review_by("maintainer"), BOT_NAMES),
        (_pull_request_by("threadline[bot]", "Bot"), BOT_NAMES),
        (_pull_request_by("dependabot[bot]", "Bot"), BOT_NAMES),
        (gh("issues", p.issues_event("labeled")), ("maintainer",)),
        (gh("installation", p.installation_event()), ("maintainer",)),
    ],
)
def test_drop_reason_passes(event: Event, names: tuple[str, ...]) -> None:
    assert drop_reason(event, names) is None


def test_drop_reason_prefers_the_bot_itself_over_the_system_note() -> None:
    data = _note(system=True)
    data["user"] = {"id": 5, "username": "threadline"}
    assert drop_reason(gl(data), BOT_NAMES) == "written by the bot itself (threadline)"


def test_an_unhandled_github_event_without_a_repository_is_ignored_not_an_error() -> None:
    result = normalize_github("github_app_authorization", {"action": "revoked", "sender": {}})
    assert isinstance(result, Ignored)
    assert "github_app_authorization" in result.reason


# ------------------------------------------------------------ order within a thread


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("host", "event", "data", "expected"),
    [
        ("github", "issue_comment", p.issue_comment(at="2026-12-04T11:02:03Z"), "2026-12-04T11:02:03"),
        ("github", "pull_request_review_comment", p.review_comment(), None),
        ("github", "issues", p.issues_event(), None),
        ("github", "ping", {"zen": "Keep it logically awesome."}, None),
        ("gitlab", "Note Hook", p.gitlab_fixture("docs/note_hook.issue.json"), "2015-05-17T17:06:40"),
        ("gitlab", "Merge Request Hook", p.gitlab_fixture("docs/merge_request_hook.open.json"), "2013-12-03T17:23:34"),
        ("gitlab", "Merge Request Hook", p.gitlab_fixture("go-gitlab/service_merge_request.json"), "2021-09-27T05:01:21"),
        ("local", "comment", {"comment": {"created_at": "2026-12-04T11:02:03Z"}}, None),
    ],
)  # fmt: skip
def test_event_time_comes_from_the_payload(
    host: str, event: str, data: dict[str, Any], expected: str | None
) -> None:
    assert event_time(host, event, data) == (_at(expected) if expected else None)


def test_an_edited_comment_is_ordered_by_its_edit() -> None:
    data = p.issue_comment(action="edited", at="2026-12-04T11:00:00Z")
    data["comment"]["updated_at"] = "2026-12-04T11:05:00+01:00"
    assert event_time("github", "issue_comment", data) == _at("2026-12-04T10:05:00")


@pytest.mark.parametrize("value", ["", "yesterday", 1733310000, None, "2026-13-40T00:00:00Z"])
def test_an_unreadable_time_is_no_time(value: object) -> None:
    data = p.issue_comment()
    data["comment"]["updated_at"] = data["comment"]["created_at"] = value
    assert event_time("github", "issue_comment", data) is None


@pytest.mark.parametrize(
    ("host", "event", "data", "key"),
    [
        ("github", "issue_comment", p.issue_comment(), "github:octo-org/hello-world/issues/7"),
        ("github", "issue_comment", p.issue_comment(pull=True, number=12), "github:octo-org/hello-world/pulls/12"),
        ("github", "pull_request_review_comment", p.review_comment(comment_id=7002, in_reply_to=7001), "github:octo-org/hello-world/pulls/12/threads/7001"),
        ("github", "pull_request_review", p.review(), "github:octo-org/hello-world/pulls/12"),
        ("github", "issues", p.issues_event(), "github:octo-org/hello-world/issues/7"),
        ("github", "installation", p.installation_event(), "github:installations/4242"),
        ("gitlab", "Note Hook", p.gitlab_fixture("docs/note_hook.issue.json"), "gitlab:gitlab-org/gitlab-test/issues/17"),
    ],
)  # fmt: skip
def test_order_key_is_the_sessions_thread(
    host: str, event: str, data: dict[str, Any], key: str
) -> None:
    normalized = normalize(host, event, data)
    assert not isinstance(normalized, Ignored)
    assert order_key(normalized) == key
