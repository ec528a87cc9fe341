"""bot.ingress.verify: signature and token checks, header handling and body decoding, no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.delivery import IncomingDelivery
from bot.ingress.verify import (
    KEPT_HEADERS,
    WebhookRejected,
    accept_github,
    accept_gitlab,
    decode_payload,
    sign_github,
)
from tests import payloads as p

# https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
VECTOR_SECRET = "It's a Secret to Everybody"
VECTOR_BODY = b"Hello, World!"
VECTOR_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

COMMENT_BODY = p.encode(p.issue_comment())


def reject(call: Callable[[], Any]) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        call()
    return caught.value


# ---------------------------------------------------------------- sign_github


def test_sign_github_matches_githubs_documented_test_vector() -> None:
    assert VECTOR_SECRET == p.SECRET
    assert sign_github(VECTOR_BODY, VECTOR_SECRET) == VECTOR_SIGNATURE


def test_documented_vector_passes_verification_and_only_then_fails_decoding() -> None:
    # The body is not JSON, so a 400 (not 401) proves the signature was accepted.
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": VECTOR_SIGNATURE,
    }
    error = reject(lambda: accept_github(headers, VECTOR_BODY, VECTOR_SECRET))
    assert (error.status, error.reason) == (400, "body is not valid JSON")


@pytest.mark.parametrize("changed", [b"Hello, World?", b"hello, World!", b"Hello, World!\n"])
def test_documented_vector_signature_rejects_a_one_byte_change(changed: bytes) -> None:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": VECTOR_SIGNATURE,
    }
    error = reject(lambda: accept_github(headers, changed, VECTOR_SECRET))
    assert error.status == 401
    assert sign_github(changed, VECTOR_SECRET) != VECTOR_SIGNATURE


# ---------------------------------------------------------------- accept_github


def test_accept_github_accepts_a_signed_json_delivery() -> None:
    headers = p.github_headers("issue_comment", COMMENT_BODY, delivery="72d3162e-cc78-11e3")
    delivery = accept_github(headers, COMMENT_BODY, p.SECRET)
    assert delivery == IncomingDelivery(
        host="github",
        delivery_id="72d3162e-cc78-11e3",
        event="issue_comment",
        action="created",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/abc123",
            "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3",
            "X-GitHub-Hook-ID": "292430182",
        },
        body=COMMENT_BODY,
        handled=True,
    )


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


def _with(headers: dict[str, str], **changes: str) -> dict[str, str]:
    renamed = {k.replace("_", "-"): v for k, v in changes.items()}
    return {**headers, **renamed}


GOOD = p.github_headers("issue_comment", COMMENT_BODY, delivery="d-1")
SHA1 = "sha1=" + hashlib.sha1(COMMENT_BODY).hexdigest()  # noqa: S324 (the refused legacy header)

GITHUB_REJECTIONS: list[tuple[str, dict[str, str], bytes, str, int, str]] = [
    (
        "missing signature",
        _without(GOOD, "X-Hub-Signature-256"),
        COMMENT_BODY,
        p.SECRET,
        401,
        "missing X-Hub-Signature-256",
    ),
    (
        "empty signature",
        _with(GOOD, X_Hub_Signature_256=""),
        COMMENT_BODY,
        p.SECRET,
        401,
        "missing X-Hub-Signature-256",
    ),
    (
        "sha1 signature",
        _with(GOOD, X_Hub_Signature_256=SHA1),
        COMMENT_BODY,
        p.SECRET,
        401,
        "sha256=",
    ),
    ("wrong secret", GOOD, COMMENT_BODY, "not the secret", 401, "does not match"),
    (
        "signed with another secret",
        p.github_headers("issue_comment", COMMENT_BODY, secret="other"),
        COMMENT_BODY,
        p.SECRET,
        401,
        "does not match",
    ),
    (
        "tampered body",
        GOOD,
        COMMENT_BODY.replace(b"review this", b"delete this"),
        p.SECRET,
        401,
        "does not match",
    ),
    (
        "signature not hex",
        _with(GOOD, X_Hub_Signature_256="sha256=zz"),
        COMMENT_BODY,
        p.SECRET,
        401,
        "does not match",
    ),
    (
        "missing event",
        _without(GOOD, "X-GitHub-Event"),
        COMMENT_BODY,
        p.SECRET,
        400,
        "X-GitHub-Event",
    ),
    (
        "missing delivery",
        _without(GOOD, "X-GitHub-Delivery"),
        COMMENT_BODY,
        p.SECRET,
        400,
        "X-GitHub-Delivery",
    ),
    (
        "overlong delivery",
        _with(GOOD, X_GitHub_Delivery="d" * 129),
        COMMENT_BODY,
        p.SECRET,
        400,
        "X-GitHub-Delivery",
    ),
    (
        "invalid JSON with a valid signature",
        p.github_headers("issue_comment", b"{not json"),
        b"{not json",
        p.SECRET,
        400,
        "not valid JSON",
    ),
    (
        "JSON array",
        p.github_headers("issue_comment", b"[1, 2]"),
        b"[1, 2]",
        p.SECRET,
        400,
        "not a JSON object",
    ),
    (
        "text/plain",
        _with(GOOD, Content_Type="text/plain"),
        COMMENT_BODY,
        p.SECRET,
        415,
        "text/plain",
    ),
    (
        "no content type",
        _without(GOOD, "Content-Type"),
        COMMENT_BODY,
        p.SECRET,
        415,
        "(none)",
    ),
]


@pytest.mark.parametrize(
    ("headers", "body", "secret", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in GITHUB_REJECTIONS],
)
def test_accept_github_rejects(
    headers: dict[str, str], body: bytes, secret: str, status: int, reason: str
) -> None:
    error = reject(lambda: accept_github(headers, body, secret))
    assert error.status == status
    assert reason in error.reason
    assert str(error) == error.reason


@pytest.mark.parametrize("signature", ["sha256=\u00e9", "sha256=\udcff" + "0" * 63])
def test_accept_github_rejects_a_non_ascii_signature_with_401(signature: str) -> None:
    headers = {**GOOD, "X-Hub-Signature-256": signature}
    assert reject(lambda: accept_github(headers, COMMENT_BODY, p.SECRET)).status == 401


def test_accept_github_checks_the_signature_before_anything_else() -> None:
    # No event, no delivery id, no JSON: an unsigned request learns only that it is unsigned.
    error = reject(lambda: accept_github({"Content-Type": "text/plain"}, b"junk", p.SECRET))
    assert error.status == 401


def test_accept_github_decodes_a_form_encoded_delivery() -> None:
    payload = p.issue_comment("a + b & c = d? 100% ✓")
    form = urlencode({"payload": json.dumps(payload)}).encode("ascii")
    headers = {
        **p.github_headers("issue_comment", form, delivery="form-1"),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    delivery = accept_github(headers, form, p.SECRET)
    assert delivery.body == form
    assert delivery.action == "created"
    assert delivery.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert decode_payload(delivery.headers["Content-Type"], delivery.body) == payload


def test_accept_github_form_must_be_signed_over_the_raw_form_body() -> None:
    payload = p.issue_comment()
    form = urlencode({"payload": json.dumps(payload)}).encode("ascii")
    headers = {
        **p.github_headers("issue_comment", p.encode(payload)),  # signed over the JSON instead
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert reject(lambda: accept_github(headers, form, p.SECRET)).status == 401


@pytest.mark.parametrize(
    "transform",
    [str.lower, str.upper, lambda name: name.swapcase()],
    ids=["lower", "upper", "swap"],
)
def test_accept_github_header_names_are_case_insensitive(
    transform: Callable[[str], str],
) -> None:
    headers = {transform(k): v for k, v in GOOD.items()}
    delivery = accept_github(headers, COMMENT_BODY, p.SECRET)
    assert delivery.event == "issue_comment"
    assert delivery.delivery_id == "d-1"
    # Kept headers come back under their canonical spelling.
    assert delivery.headers["X-GitHub-Event"] == "issue_comment"
    assert delivery.headers["X-GitHub-Delivery"] == "d-1"
    assert set(delivery.headers) <= set(KEPT_HEADERS)


@pytest.mark.parametrize(
    ("event", "payload", "handled", "action"),
    [
        ("issue_comment", p.issue_comment(), True, "created"),
        ("issue_comment", p.issue_comment(action="edited"), True, "edited"),
        ("issue_comment", p.issue_comment(action="deleted"), True, "deleted"),
        ("pull_request_review_comment", p.review_comment(), True, "created"),
        ("pull_request_review", p.review(action="dismissed"), True, "dismissed"),
        ("issues", p.issues_event("labeled"), True, "labeled"),
        ("installation", p.installation_event("created"), True, "created"),
        ("installation_repositories", {"action": "added"}, True, "added"),
        ("pull_request", {"action": "synchronize", "number": 12}, True, "synchronize"),
        ("star", {"action": "created", "starred_at": "2026-11-21T10:00:00Z"}, False, "created"),
        ("ping", {"zen": "Keep it logically awesome.", "hook_id": 292430182}, False, None),
        ("push", {"ref": "refs/heads/main"}, False, None),
        ("issue_comment", {"action": 7}, True, None),
        ("issues", {"action": "x" * 100}, True, "x" * 64),
    ],
)
def test_accept_github_handled_and_action(
    event: str, payload: dict[str, Any], handled: bool, action: str | None
) -> None:
    body = p.encode(payload)
    delivery = accept_github(p.github_headers(event, body), body, p.SECRET)
    assert delivery.event == event
    assert delivery.handled is handled
    assert delivery.action == action


def test_accept_github_truncates_a_long_event_name_and_does_not_handle_it() -> None:
    body = b"{}"
    delivery = accept_github(p.github_headers("e" * 100, body), body, p.SECRET)
    assert delivery.event == "e" * 64
    assert delivery.handled is False


def test_accept_github_keeps_only_the_listed_headers_and_never_a_secret() -> None:
    headers = {
        **GOOD,
        "X-Hub-Signature": "sha1=0123",
        "X-Gitlab-Token": "must-not-be-kept",
        "Authorization": "Bearer must-not-be-kept",
        "Cookie": "session=must-not-be-kept",
        "X-GitHub-Hook-Installation-Target-ID": "79929171",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Enterprise-Host": "ghe.example.com",
        "X-GitHub-Enterprise-Version": "3.14.0",
    }
    kept = accept_github(headers, COMMENT_BODY, p.SECRET).headers
    assert set(kept) == {
        "Content-Type",
        "User-Agent",
        "X-GitHub-Event",
        "X-GitHub-Delivery",
        "X-GitHub-Hook-ID",
        "X-GitHub-Hook-Installation-Target-ID",
        "X-GitHub-Hook-Installation-Target-Type",
        "X-GitHub-Enterprise-Host",
        "X-GitHub-Enterprise-Version",
    }
    assert "must-not-be-kept" not in repr(kept)
    assert GOOD["X-Hub-Signature-256"] not in kept.values()


def test_kept_headers_list_names_no_secret_header() -> None:
    lowered = {name.lower() for name in KEPT_HEADERS}
    for secret_header in ("x-gitlab-token", "x-hub-signature-256", "x-hub-signature"):
        assert secret_header not in lowered


# ---------------------------------------------------------------- accept_gitlab

NOTE = p.gitlab_fixture("docs/note_hook.merge_request.json")
NOTE_BODY = p.encode(NOTE)


def gl_headers(event: str = "Note Hook", **options: Any) -> dict[str, str]:
    headers = p.gitlab_headers(event, **options)
    headers["X-Gitlab-Event-UUID"] = "13792a34-cac6-4fda-95a8-c58e00a3954e"
    return headers


def test_accept_gitlab_accepts_a_delivery_with_the_right_token() -> None:
    headers = gl_headers(idempotency_key="f5e5f430-f57b-4e6e-9fac-d9128cd7232f")
    delivery = accept_gitlab(headers, NOTE_BODY, p.GITLAB_TOKEN)
    assert delivery == IncomingDelivery(
        host="gitlab",
        delivery_id="f5e5f430-f57b-4e6e-9fac-d9128cd7232f",
        event="Note Hook",
        action="create",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "GitLab/17.5.0",
            "X-Gitlab-Event": "Note Hook",
            "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
            "X-Gitlab-Webhook-UUID": "cb2f4ac0-0c2a-4f5e-8d7c-5d1a6ab1c001",
            "X-Gitlab-Instance": "https://gitlab.example.com",
            "Idempotency-Key": "f5e5f430-f57b-4e6e-9fac-d9128cd7232f",
        },
        body=NOTE_BODY,
        handled=True,
    )


GITLAB_REJECTIONS: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("missing token", _without(gl_headers(), "X-Gitlab-Token"), NOTE_BODY, 401, "missing"),
    ("empty token", gl_headers(token=""), NOTE_BODY, 401, "missing"),
    ("wrong token", gl_headers(token="not-the-token"), NOTE_BODY, 401, "does not match"),
    ("token prefix", gl_headers(token=p.GITLAB_TOKEN[:-1]), NOTE_BODY, 401, "does not match"),
    ("token plus", gl_headers(token=p.GITLAB_TOKEN + "x"), NOTE_BODY, 401, "does not match"),
    ("token case", gl_headers(token=p.GITLAB_TOKEN.upper()), NOTE_BODY, 401, "does not match"),
    ("missing event", _without(gl_headers(), "X-Gitlab-Event"), NOTE_BODY, 400, "X-Gitlab-Event"),
    ("invalid JSON", gl_headers(), b"{", 400, "not valid JSON"),
    ("JSON string", gl_headers(), b'"note"', 400, "not a JSON object"),
    ("text/plain", _with(gl_headers(), Content_Type="text/plain"), NOTE_BODY, 415, "text/plain"),
]


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in GITLAB_REJECTIONS],
)
def test_accept_gitlab_rejects(
    headers: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    error = reject(lambda: accept_gitlab(headers, body, p.GITLAB_TOKEN))
    assert error.status == status
    assert reason in error.reason
    assert p.GITLAB_TOKEN not in error.reason


def test_accept_gitlab_rejects_a_non_ascii_token_with_401() -> None:
    headers = gl_headers(token="t\u00e9st")
    assert reject(lambda: accept_gitlab(headers, NOTE_BODY, p.GITLAB_TOKEN)).status == 401


def test_accept_gitlab_rejects_an_undecodable_token_with_401() -> None:
    headers = gl_headers(token="\udcff")
    assert reject(lambda: accept_gitlab(headers, NOTE_BODY, p.GITLAB_TOKEN)).status == 401


def test_accept_gitlab_checks_the_token_before_the_body() -> None:
    headers = {"Content-Type": "text/plain", "X-Gitlab-Token": "wrong"}
    assert reject(lambda: accept_gitlab(headers, b"junk", p.GITLAB_TOKEN)).status == 401


def _derived_id(event_uuid: str, body: bytes) -> str:
    return accept_gitlab(
        {**gl_headers(idempotency_key=None), "X-Gitlab-Event-UUID": event_uuid},
        body,
        p.GITLAB_TOKEN,
    ).delivery_id


def test_accept_gitlab_without_idempotency_key_derives_a_stable_id() -> None:
    first = _derived_id("uuid-a", NOTE_BODY)
    assert first.startswith("sha256:")
    assert len(first) == len("sha256:") + 64
    assert first == _derived_id("uuid-a", NOTE_BODY)  # a retry of the same delivery
    assert first == "sha256:" + hashlib.sha256(b"uuid-a\n" + NOTE_BODY).hexdigest()
    assert first != _derived_id("uuid-b", NOTE_BODY)  # another delivery of the same body
    other_body = p.encode({**NOTE, "object_attributes": {**NOTE["object_attributes"], "id": 1}})
    assert first != _derived_id("uuid-a", other_body)


def test_accept_gitlab_without_any_uuid_still_derives_an_id_from_the_body() -> None:
    headers = _without(gl_headers(idempotency_key=None), "X-Gitlab-Event-UUID")
    delivery = accept_gitlab(headers, NOTE_BODY, p.GITLAB_TOKEN)
    assert delivery.delivery_id == "sha256:" + hashlib.sha256(b"\n" + NOTE_BODY).hexdigest()


@pytest.mark.parametrize("key", ["", "k" * 129])
def test_accept_gitlab_ignores_an_empty_or_overlong_idempotency_key(key: str) -> None:
    delivery = accept_gitlab(gl_headers(idempotency_key=key), NOTE_BODY, p.GITLAB_TOKEN)
    assert delivery.delivery_id.startswith("sha256:")


def test_accept_gitlab_idempotency_key_wins_over_the_uuid() -> None:
    one = accept_gitlab(gl_headers(idempotency_key="same"), NOTE_BODY, p.GITLAB_TOKEN)
    two = accept_gitlab(
        {**gl_headers(idempotency_key="same"), "X-Gitlab-Event-UUID": "another"},
        NOTE_BODY,
        p.GITLAB_TOKEN,
    )
    assert one.delivery_id == two.delivery_id == "same"


def test_accept_gitlab_never_keeps_the_token() -> None:
    headers = {k.lower(): v for k, v in gl_headers().items()}
    delivery = accept_gitlab(headers, NOTE_BODY, p.GITLAB_TOKEN)
    assert delivery.headers["X-Gitlab-Event"] == "Note Hook"
    assert all(name.lower() != "x-gitlab-token" for name in delivery.headers)
    assert p.GITLAB_TOKEN not in delivery.headers.values()
    assert p.GITLAB_TOKEN not in repr(delivery)


@pytest.mark.parametrize(
    ("event", "fixture", "handled", "action"),
    [
        ("Note Hook", "docs/note_hook.merge_request.json", True, "create"),
        ("Confidential Note Hook", "docs/note_hook.issue.json", True, "create"),
        ("Issue Hook", "docs/issue_hook.open.json", True, "open"),
        ("Confidential Issue Hook", "go-gitlab/issue.json", True, "open"),
        ("Merge Request Hook", "docs/merge_request_hook.open.json", True, "open"),
        ("Merge Request Hook", "go-gitlab/service_merge_request.json", True, "update"),
        ("Push Hook", "go-gitlab/push.json", False, None),
        ("Pipeline Hook", "go-gitlab/push.json", False, None),
    ],
)
def test_accept_gitlab_handled_and_action(
    event: str, fixture: str, handled: bool, action: str | None
) -> None:
    body = p.encode(p.gitlab_fixture(fixture))
    delivery = accept_gitlab(gl_headers(event), body, p.GITLAB_TOKEN)
    assert delivery.host == "gitlab"
    assert delivery.event == event
    assert delivery.handled is handled
    assert delivery.action == action


@pytest.mark.parametrize(("fixture", "event"), sorted(p.GITLAB_FIXTURES.items()))
def test_accept_gitlab_accepts_every_fixture(fixture: str, event: str) -> None:
    body = p.encode(p.gitlab_fixture(fixture))
    delivery = accept_gitlab(gl_headers(event), body, p.GITLAB_TOKEN)
    assert delivery.event == event
    assert delivery.handled is (event != "Push Hook")


# ---------------------------------------------------------------- decode_payload

OBJECT = {"action": "created", "n": 1, "text": "héllo ✓"}
OBJECT_JSON = json.dumps(OBJECT).encode("utf-8")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", OBJECT_JSON),
        ("application/json; charset=utf-8", OBJECT_JSON),
        ("Application/JSON", OBJECT_JSON),
        (" application/json ;charset=UTF-8", OBJECT_JSON),
        ("application/json", json.dumps(OBJECT, ensure_ascii=False).encode("utf-8")),
        ("application/json", json.dumps(OBJECT).encode("utf-16")),
        ("application/x-www-form-urlencoded", urlencode({"payload": OBJECT_JSON}).encode()),
        (
            "application/x-www-form-urlencoded; charset=utf-8",
            urlencode({"payload": OBJECT_JSON, "other": "x"}).encode(),
        ),
    ],
)
def test_decode_payload_accepts(content_type: str, body: bytes) -> None:
    assert decode_payload(content_type, body) == OBJECT


def test_decode_payload_decodes_an_empty_object() -> None:
    assert decode_payload("application/json", b"{}") == {}


FORM = "application/x-www-form-urlencoded"

DECODE_REJECTIONS: list[tuple[str, str | None, bytes, int, str]] = [
    ("no content type", None, OBJECT_JSON, 415, "(none)"),
    ("empty content type", "", OBJECT_JSON, 415, "(none)"),
    ("text/plain", "text/plain", OBJECT_JSON, 415, "'text/plain'"),
    ("json suffix type", "application/vnd.github+json", OBJECT_JSON, 415, "unsupported"),
    ("multipart", "multipart/form-data; boundary=x", OBJECT_JSON, 415, "multipart/form-data"),
    ("empty body", "application/json", b"", 400, "not valid JSON"),
    ("truncated", "application/json", OBJECT_JSON[:-1], 400, "not valid JSON"),
    ("not utf-8", "application/json", b'{"a": "\xff"}', 400, "not valid JSON"),
    ("array", "application/json", b"[]", 400, "not a JSON object"),
    ("null", "application/json", b"null", 400, "not a JSON object"),
    ("number", "application/json", b"42", 400, "not a JSON object"),
    ("form without payload", FORM, b"other=1", 400, "'payload'"),
    ("form with two payloads", FORM, b"payload=%7B%7D&payload=%7B%7D", 400, "'payload'"),
    ("empty form", FORM, b"", 400, "'payload'"),
    ("malformed form", FORM, b"payload", 400, "malformed form"),
    ("form not utf-8", FORM, b"payload=\xff", 400, "malformed form"),
    ("form payload not JSON", FORM, b"payload=nope", 400, "not valid JSON"),
    ("form payload array", FORM, b"payload=%5B%5D", 400, "not a JSON object"),
]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in DECODE_REJECTIONS],
)
def test_decode_payload_rejects(
    content_type: str | None, body: bytes, status: int, reason: str
) -> None:
    error = reject(lambda: decode_payload(content_type, body))
    assert error.status == status
    assert reason in error.reason


def test_decode_payload_rejects_deeply_nested_json_with_400() -> None:
    body = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    error = reject(lambda: decode_payload("application/json", body))
    assert error.status == 400


# orjson parses first; what it refuses the standard library decides, so these bodies,
# which json.loads takes and orjson does not, are still accepted, each as json reads it.
STDLIB_ONLY_JSON = [
    ("NaN", b'{"score": NaN}', "score"),
    ("lone surrogate escape", b'{"body": "half an emoji \\ud83d"}', "body"),
    ("UTF-16 with BOM", '{"body": "x"}'.encode("utf-16"), "body"),
]


@pytest.mark.parametrize(
    ("body", "key"), [pytest.param(*case[1:], id=case[0]) for case in STDLIB_ONLY_JSON]
)
def test_decode_payload_accepts_what_the_standard_library_accepts(body: bytes, key: str) -> None:
    data = decode_payload("application/json", body)
    assert repr(data[key]) == repr(json.loads(body)[key])  # repr: NaN is not equal to itself


def test_decode_payload_accepts_an_integer_past_64_bits_as_a_float() -> None:
    # orjson's one reading that differs from json's; no host sends such a number.
    data = decode_payload("application/json", b'{"id": 123456789012345678901234567890}')
    assert data["id"] == float(123456789012345678901234567890)
