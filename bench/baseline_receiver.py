"""Baseline for bench/ingress.py: the least a GitHub webhook receiver can do. NOT durable.

It verifies X-Hub-Signature-256 with gidgethub (GitLab: compares X-Gitlab-Token with
the secret in constant time), parses the JSON body and answers 202, storing nothing. Threadline's ingress does the same work plus a committed write, so the
gap between the two is the price of durability on the same machine and load generator.

Started by bench/ingress.py; to run it alone:

    BENCH_WEBHOOK_SECRET=s3cret .venv/bin/python bench/baseline_receiver.py --port 8081
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys

from aiohttp import web
from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event

SECRET_ENV = "BENCH_WEBHOOK_SECRET"
MAX_BODY_BYTES = 25 * 1024 * 1024  # the same cap Threadline applies
SECRET = web.AppKey("secret", str)


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def github_webhook(request: web.Request) -> web.Response:
    body = await request.read()
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature.startswith("sha256="):
        return _error(401, "missing or non-sha256 X-Hub-Signature-256")
    try:
        validate_event(body, signature=signature, secret=request.app[SECRET])
    except ValidationFailure:
        return _error(401, "signature does not match the payload")
    try:
        data = json.loads(body)
    except ValueError:
        return _error(400, "body is not valid JSON")
    if not isinstance(data, dict):
        return _error(400, "body is not a JSON object")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    return web.json_response({"status": "accepted", "delivery": delivery}, status=202)


async def gitlab_webhook(request: web.Request) -> web.Response:
    body = await request.read()
    token = request.headers.get("X-Gitlab-Token", "")
    if not hmac.compare_digest(token.encode(), request.app[SECRET].encode()):
        return _error(401, "X-Gitlab-Token does not match")
    try:
        data = json.loads(body)
    except ValueError:
        return _error(400, "body is not valid JSON")
    if not isinstance(data, dict):
        return _error(400, "body is not a JSON object")
    delivery = request.headers.get("Idempotency-Key", "")
    return web.json_response({"status": "accepted", "delivery": delivery}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def create_app(secret: str) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SECRET] = secret
    app.router.add_post("/webhooks/github", github_webhook)
    app.router.add_post("/webhooks/gitlab", gitlab_webhook)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Minimal non-durable GitHub and GitLab webhook receiver (benchmark baseline). "
        f"The webhook secret is read from ${SECRET_ENV}."
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="listen port")
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        print(f"baseline_receiver: set {SECRET_ENV}", file=sys.stderr)
        return 2
    print(f"listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    # run_app turns SIGTERM/SIGINT into a clean shutdown; no access log, as in Threadline.
    web.run_app(create_app(secret), host=args.host, port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
