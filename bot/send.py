"""Send a webhook delivery to a running Threadline, signed the way the host signs it.

For trying a set-up without a real host: the delivery takes the same path as one from
GitHub or GitLab (verify, store, answer, process).
"""

from __future__ import annotations

import uuid

import aiohttp

from bot.config import Settings
from bot.ingress.verify import sign_github


class SendError(Exception):
    """The delivery could not be signed or sent; the message says why."""


def delivery_headers(settings: Settings, host: str, event: str, body: bytes) -> dict[str, str]:
    """Headers GitHub or GitLab would send with `body`, using this server's secret."""
    headers = {"Content-Type": "application/json", "User-Agent": "threadline-send"}
    if host == "github":
        if not settings.github_webhook_secret:
            raise SendError("THREADLINE_GITHUB_WEBHOOK_SECRET is not set: nothing to sign with")
        headers.update(
            {
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sign_github(body, settings.github_webhook_secret),
            }
        )
    elif host == "gitlab":
        if not settings.gitlab_webhook_token:
            raise SendError("THREADLINE_GITLAB_WEBHOOK_TOKEN is not set: nothing to send")
        headers.update(
            {
                "X-Gitlab-Event": event,
                "X-Gitlab-Token": settings.gitlab_webhook_token,
                "Idempotency-Key": str(uuid.uuid4()),
            }
        )
    else:
        raise SendError(f"unknown host {host!r}: use github or gitlab")
    return headers


async def send(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """POST one delivery; return the status and the answer's text."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.post(url, data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SendError(f"cannot reach {url}: {exc or type(exc).__name__}") from exc
