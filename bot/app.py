"""The web process's application: ingress, with the UI (sign-in, inspector, playground,
setup pages) installed beside it. Nothing starts until it is run."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from bot.api.routes import install_api
from bot.api.tokens import TokenStore
from bot.config import MAX_BODY_BYTES, Settings
from bot.inbox import Inbox
from bot.ingress.routes import ingest_local, install_ingress, webhooks_first
from bot.mcpserver.http import install_mcp
from bot.runtime import Runtime
from bot.web.auth import install_auth
from bot.web.inspector import install_inspector
from bot.web.metrics import install_metrics
from bot.web.operator import install_operator
from bot.web.playground import PLAYGROUND, install_playground
from bot.web.redact import Scrubber, install_scrubber
from bot.web.schedules_page import install_schedules_page
from bot.web.setup import add_setup_routes


def create_app(
    settings: Settings,
    *,
    inbox: Inbox,
    on_stored: Callable[[], None] | None = None,
    scrubber: Scrubber | None = None,
    runtime: Runtime | None = None,
) -> web.Application:
    """Build the web application; nothing starts until it is run.

    `scrubber` holds every configured secret (`Scrubber.configured(settings, config)`,
    built once with the agents file: `Services.scrubber`); without one, the settings'
    secrets only. Every answer of the app passes it. `runtime` (with its session service,
    in a process with workers) serves /api/v1's launches and prompts."""
    # aiohttp refuses bodies past client_max_size with 413 while reading them.
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    install_scrubber(app, Scrubber.configured(settings) if scrubber is None else scrubber)

    def local_secret() -> str | None:
        return app[PLAYGROUND].secret

    install_ingress(
        app,
        settings,
        inbox=inbox,
        on_stored=on_stored,
        local_secret=local_secret if settings.playground else None,
    )
    tokens = TokenStore(inbox.engine)
    install_auth(app, settings, tokens=tokens)  # /login, /logout; /inspect and /api/ need a token
    inspector = install_inspector(app, settings, inbox.engine)
    config = runtime.config if runtime is not None else None
    show_cost = config is not None and config.status.show_cost
    inspector.actions.show_cost = show_cost  # closed from a page: the same status comment
    limits = config.limits if config is not None else None
    install_operator(app, settings, inbox.engine, limits, show_cost=show_cost)  # /inspect/repos
    install_schedules_page(app, inbox.engine, config.schedules if config is not None else ())
    api = install_api(
        app, engine=inbox.engine, tokens=tokens, runtime=runtime, hosts=settings.hosts
    )
    install_mcp(app, api)  # /mcp: the same tokens and operations, over MCP
    install_metrics(app, inbox.engine)  # /metrics: an operator or viewer token
    if settings.playground:
        install_playground(app, settings, inbox.engine, ingest=ingest_local)
    add_setup_routes(app, settings)  # /, /setup/*: connecting GitHub and GitLab
    # In front of them all: webhook POSTs skip the scrub, auth and API-error passes
    # (none applies to them; bot.ingress.routes.webhooks_first says why).
    app.middlewares.insert(0, webhooks_first)
    return app
