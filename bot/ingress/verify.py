"""Webhook verification and decoding with no I/O: headers and raw bytes in, a delivery out.

Verification always comes first; the body is not looked at until the request has
proved it comes from the host.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson
from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event
from multidict import CIMultiDict, CIMultiDictProxy

from bot.delivery import IncomingDelivery
from bot.events import LOCAL_EVENTS

# Events whose deliveries the dispatcher normalizes; anything else is stored as ignored.
GITHUB_EVENTS = frozenset(
    {
        "issue_comment",
        "issues",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "installation",
        "installation_repositories",
    }
)
# https://docs.gitlab.com/user/project/integrations/webhook_events/ (X-Gitlab-Event values)
GITLAB_EVENTS = frozenset(
    {
        "Note Hook",
        "Confidential Note Hook",
        "Issue Hook",
        "Confidential Issue Hook",
        "Merge Request Hook",
    }
)

# Headers kept with a stored delivery. Never X-Gitlab-Token: it is the shared secret.
KEPT_HEADERS = (
    "Content-Type",
    "User-Agent",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-ID",
    "X-GitHub-Hook-Installation-Target-Type",
    "X-GitHub-Enterprise-Host",
    "X-GitHub-Enterprise-Version",
    "X-Gitlab-Event",
    "X-Gitlab-Event-UUID",
    "X-Gitlab-Webhook-UUID",
    "X-Gitlab-Instance",
    "Idempotency-Key",
    "X-Threadline-Event",
    "X-Threadline-Delivery",
)


class WebhookRejected(Exception):
    """The request is not an acceptable delivery; answer `status` with `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _case_blind(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Headers whose names match in any case (as HTTP's do); aiohttp's already do."""
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers
    return CIMultiDict(headers)


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in KEPT_HEADERS if name in headers}


def _event_and_id(headers: Mapping[str, str], event: str, delivery: str) -> tuple[str, str]:
    """The event name and the delivery id from their headers, or a 400 naming the one
    missing (an id over 128 characters counts as missing)."""
    name = headers.get(event)
    delivery_id = headers.get(delivery)
    if not name:
        raise WebhookRejected(400, f"missing {event} header")
    if not delivery_id or len(delivery_id) > 128:
        raise WebhookRejected(400, f"missing or overlong {delivery} header")
    return name, delivery_id


def _parse_json(text: bytes) -> Any:
    """Parse JSON with orjson, and let the standard library decide what orjson refuses.

    Parsing the body is the largest single cost of receiving a delivery (a quarter of
    the event loop's time with the standard library, bench/README.md); orjson takes
    about half as long. It is stricter in a few corners the standard library accepts
    (NaN, a lone surrogate escape, UTF-16 bodies), so what it refuses goes to
    json.loads: a body is accepted exactly when json.loads accepts it. The one value
    read differently is an integer past 64 bits, a float here; no host sends one.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookRejected(400, "body is not valid JSON") from None


def decode_payload(content_type: str | None, body: bytes) -> dict[str, Any]:
    """Decode a delivery body to its JSON object.

    GitHub sends either application/json or a form with the JSON in its `payload`
    field, depending on the hook's content type setting; GitLab always sends JSON.
    """
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json":
        text = body
    elif media == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise WebhookRejected(400, "malformed form body") from None
        if len(form.get("payload", [])) != 1:
            raise WebhookRejected(400, "form body has no single 'payload' field")
        text = form["payload"][0].encode("utf-8")
    else:
        raise WebhookRejected(
            415, f"unsupported content type {media or '(none)'!r}; send application/json"
        )
    data = _parse_json(text)
    if not isinstance(data, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return data


def _action(data: Mapping[str, Any]) -> str | None:
    action = data.get("action")
    if isinstance(action, str):
        return action[:64]
    attributes = data.get("object_attributes")
    if isinstance(attributes, dict) and isinstance(attributes.get("action"), str):
        return str(attributes["action"])[:64]
    return None


def accept_github(headers: Mapping[str, str], body: bytes, secret: str) -> IncomingDelivery:
    """Verify a GitHub delivery's HMAC-SHA256 signature, then decode it.

    https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    """
    headers = _case_blind(headers)
    signature = headers.get("X-Hub-Signature-256")
    if not signature:
        raise WebhookRejected(401, "missing X-Hub-Signature-256 header")
    if not signature.startswith("sha256="):
        raise WebhookRejected(401, "X-Hub-Signature-256 must be an sha256= signature")
    if not signature.isascii():  # aiohttp hands undecodable header bytes over as surrogates
        raise WebhookRejected(401, "signature does not match the payload")
    try:
        validate_event(body, signature=signature, secret=secret)
    except ValidationFailure:
        raise WebhookRejected(401, "signature does not match the payload") from None
    event, delivery_id = _event_and_id(headers, "X-GitHub-Event", "X-GitHub-Delivery")
    data = decode_payload(headers.get("Content-Type"), body)
    return IncomingDelivery(
        host="github",
        delivery_id=delivery_id,
        event=event[:64],
        action=_action(data),
        headers=_kept(headers),
        body=body,
        handled=event in GITHUB_EVENTS,
    )


# What a delivery read through GitHub's API (poll mode) is stored with, in place of the
# sender's content type: its payload comes back parsed and is stored re-encoded as JSON.
POLLED_CONTENT_TYPE = "application/json"
POLLED_USER_AGENT = "threadline-poll"


def accept_github_polled(headers: Mapping[str, str], payload: object) -> IncomingDelivery:
    """A delivery read from GitHub's deliveries API (`GET /app/hook/deliveries/{id}`).

    There is no signature to check: the API gives the payload parsed, not the signed
    bytes. Its trust rests on the call itself, made as the App (its JWT) over TLS to
    the configured GitHub, so only the caller (bot.poll) may hand deliveries here.
    https://docs.github.com/en/rest/apps/webhooks#get-a-delivery-for-an-app-webhook
    """
    headers = _case_blind(headers)
    event, delivery_id = _event_and_id(headers, "X-GitHub-Event", "X-GitHub-Delivery")
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "the payload is not a JSON object")
    kept = {
        **_kept(headers),
        "Content-Type": POLLED_CONTENT_TYPE,
        "User-Agent": POLLED_USER_AGENT,
    }
    return IncomingDelivery(
        host="github",
        delivery_id=delivery_id,
        event=event[:64],
        action=_action(payload),
        headers=kept,
        body=orjson.dumps(payload),
        handled=event in GITHUB_EVENTS,
    )


def accept_gitlab(headers: Mapping[str, str], body: bytes, token: str) -> IncomingDelivery:
    """Check GitLab's shared secret token (sent verbatim, no HMAC), then decode.

    The delivery id is GitLab's Idempotency-Key (17.4 and later, the same on every
    retry); older GitLab gets a stable hash of the event UUID and the body instead.
    https://docs.gitlab.com/user/project/integrations/webhooks/#delivery-headers
    """
    headers = _case_blind(headers)
    given = headers.get("X-Gitlab-Token")
    if not given:
        raise WebhookRejected(401, "missing X-Gitlab-Token header")
    # surrogateescape: a header with bytes that are not UTF-8 must fail the compare, not crash it.
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    ):
        raise WebhookRejected(401, "X-Gitlab-Token does not match")
    event = headers.get("X-Gitlab-Event")
    if not event:
        raise WebhookRejected(400, "missing X-Gitlab-Event header")
    data = decode_payload(headers.get("Content-Type"), body)
    delivery_id = headers.get("Idempotency-Key")
    if not delivery_id or len(delivery_id) > 128:
        uuid = headers.get("X-Gitlab-Event-UUID") or ""
        digest = hashlib.sha256(uuid.encode("utf-8") + b"\n" + body).hexdigest()
        delivery_id = "sha256:" + digest
    return IncomingDelivery(
        host="gitlab",
        delivery_id=delivery_id,
        event=event[:64],
        action=_action(data),
        headers=_kept(headers),
        body=body,
        handled=event in GITLAB_EVENTS,
    )


def accept_local(headers: Mapping[str, str], body: bytes, secret: str) -> IncomingDelivery:
    """Verify a playground delivery (`local` host), then decode it.

    The playground signs as GitHub does, HMAC-SHA256 of the raw body with the
    install's playground secret, in `X-Threadline-Signature-256: sha256=<hex>`; the
    event is in `X-Threadline-Event` and the delivery id in `X-Threadline-Delivery`.
    """
    headers = _case_blind(headers)
    signature = headers.get("X-Threadline-Signature-256")
    if not signature:
        raise WebhookRejected(401, "missing X-Threadline-Signature-256 header")
    expected = sign_local(body, secret)
    if not signature.isascii() or not hmac.compare_digest(signature, expected):
        raise WebhookRejected(401, "signature does not match the payload")
    event, delivery_id = _event_and_id(headers, "X-Threadline-Event", "X-Threadline-Delivery")
    data = decode_payload(headers.get("Content-Type"), body)
    return IncomingDelivery(
        host="local",
        delivery_id=delivery_id,
        event=event[:64],
        action=_action(data),
        headers=_kept(headers),
        body=body,
        handled=event in LOCAL_EVENTS,
    )


def sign_local(body: bytes, secret: str) -> str:
    """The X-Threadline-Signature-256 value for `body` (what the playground sends)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def sign_github(body: bytes, secret: str) -> str:
    """The X-Hub-Signature-256 value GitHub would send for `body` (for tests and tools)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
