"""The aiohttp application: webhook ingress and health endpoints."""

from __future__ import annotations

from bot.web.app import create_app

__all__ = ["create_app"]
