"""`threadline tokens ...` and `threadline audit`: the API's tokens and its audit trail.

Registered on the main parser by `register` (bot/cli.py calls it once).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from bot.api.tokens import SCOPES, TokenError, TokenInfo, TokenStore
from bot.config import Settings

EXIT_FAILURE = 1


def _with_tokens(settings: Settings, use: Callable[[TokenStore], int]) -> int:
    from bot.server import open_services

    services = open_services(settings, migrate=False)
    try:
        return use(TokenStore(services.engine))
    finally:
        services.engine.dispose()


def _token_json(info: TokenInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "scope": info.scope,
        "repos": list(info.repos) if info.repos is not None else None,
        "created_at": info.created_at.isoformat(),
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: TokenStore) -> int:
        try:
            token, info = store.create(args.name, args.scope, args.repo or ())
        except TokenError as exc:
            print(f"threadline: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        where = ", ".join(info.repos) if info.repos else "every repository"
        print(f"token {info.name} ({info.scope}, {where}); it is shown only now:", file=sys.stderr)
        print(token)
        return 0

    return _with_tokens(settings, use)


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: TokenStore) -> int:
        tokens = store.all()
        if args.json:
            print(json.dumps([_token_json(t) for t in tokens], indent=2))
            return 0
        if not tokens:
            print("no tokens")
            return 0
        for t in tokens:
            state = "active" if t.active else f"revoked {t.revoked_at:%Y-%m-%d %H:%M}"
            repos = ",".join(t.repos) if t.repos else "*"
            print(f"{t.name:<20}  {t.scope:<8}  {state:<24}  {repos}")
        return 0

    return _with_tokens(settings, use)


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: TokenStore) -> int:
        try:
            store.revoke(args.name)
        except TokenError as exc:
            print(f"threadline: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"token {args.name} revoked")
        return 0

    return _with_tokens(settings, use)


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: TokenStore) -> int:
        lines = store.audit_lines(limit=args.limit, token=args.token)
        if args.json:
            rows = [
                {
                    "id": a.id,
                    "at": a.at.isoformat(),
                    "token": a.token,
                    "action": a.action,
                    "target": a.target,
                }
                for a in lines
            ]
            print(json.dumps(rows, indent=2))
            return 0
        if not lines:
            print("no API actions recorded")
            return 0
        for a in lines:
            print(f"{a.at:%Y-%m-%d %H:%M:%S}  {a.token:<20}  {a.action:<10}  {a.target or ''}")
        return 0

    return _with_tokens(settings, use)


def register(commands: Any) -> None:
    """Add `tokens` and `audit` to the main parser's subcommands."""
    tokens = commands.add_parser(
        "tokens",
        help="API tokens (kept hashed; shown once when made)",
    ).add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = tokens.add_parser(
        "create",
        help="make a token and print it (once)",
        description="Make a Bearer token for /api/v1 and the inspector. Only its SHA-256 "
        "is stored: the token is printed now and never again.",
    )
    create.add_argument("name", help="how the audit trail and transcripts call it")
    create.add_argument("--scope", required=True, choices=SCOPES)
    create.add_argument(
        "--repo",
        action="append",
        metavar="OWNER/REPO",
        help="limit the token to this repository (repeatable; default: all)",
    )
    create.set_defaults(func=cmd_tokens_create)
    listing = tokens.add_parser("list", help="tokens with scope, state and repositories")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = tokens.add_parser("revoke", help="revoke a token (at once, in every process)")
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_tokens_revoke)

    audit = commands.add_parser("audit", help="actions taken through the API, newest first")
    audit.add_argument("--limit", type=int, default=100, help="how many (default 100)")
    audit.add_argument("--token", help="only this token's actions")
    audit.add_argument("--json", action="store_true", help="print JSON")
    audit.set_defaults(func=cmd_audit)
