"""A verified delivery: what ingress hands to the inbox to store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IncomingDelivery:
    """A verified delivery, ready to be stored."""

    host: str
    delivery_id: str
    event: str
    action: str | None
    headers: dict[str, str]
    body: bytes
    handled: bool
