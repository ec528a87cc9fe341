"""Event handlers, one module per concern; `build_router` joins their routers."""

from __future__ import annotations

from bot.router import Router
from handlers import comments, installation, issues, reviews


def build_router() -> Router:
    """Return the one router that holds every handler module's routes."""
    return Router.join(comments.router, reviews.router, issues.router, installation.router)
