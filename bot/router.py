"""One router from event types to handlers; handler modules each make one and they are joined."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from bot.events import Event

if TYPE_CHECKING:
    from bot.runtime import Runtime, Write

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Context:
    """What a handler may use: which delivery it is serving and the runtime's small API."""

    delivery_pk: int
    delivery_id: str
    runtime: Runtime
    # Given, a write handed to it is committed in the transaction that settles the
    # delivery as handled (and dropped if the delivery is not settled so); the worker
    # gives it. Without it, writes are committed at once.
    with_settle: Callable[[Write], None] | None = None


Handler = Callable[[Any, Context], Awaitable[None]]


class Router:
    def __init__(self) -> None:
        self._routes: dict[type[Event], list[tuple[frozenset[str] | None, Handler]]] = {}

    def register(
        self, event_type: type[E], *actions: str
    ) -> Callable[
        [Callable[[E, Context], Awaitable[None]]], Callable[[E, Context], Awaitable[None]]
    ]:
        """Route events of `event_type` (only these `actions`, when given) to the handler."""

        def decorator(
            handler: Callable[[E, Context], Awaitable[None]],
        ) -> Callable[[E, Context], Awaitable[None]]:
            wanted = frozenset(actions) if actions else None
            self._routes.setdefault(event_type, []).append((wanted, handler))
            return handler

        return decorator

    @classmethod
    def join(cls, *routers: Router) -> Router:
        joined = cls()
        for router in routers:
            for event_type, routes in router._routes.items():
                joined._routes.setdefault(event_type, []).extend(routes)
        return joined

    def handlers_for(self, event: Event) -> list[Handler]:
        return [
            handler
            for wanted, handler in self._routes.get(type(event), [])
            if wanted is None or event.action in wanted
        ]

    async def dispatch(self, event: Event, context: Context) -> int:
        """Run every matching handler in registration order; return how many ran."""
        handlers = self.handlers_for(event)
        for handler in handlers:
            await handler(event, context)
        return len(handlers)
