"""Threadline: persistent AI agent sessions bound to code review comment threads."""

from __future__ import annotations

__version__ = "0.1.0"
