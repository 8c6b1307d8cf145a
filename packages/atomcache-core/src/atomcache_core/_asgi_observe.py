"""Watching for the cookies a middleware outside the cache sets on its pages.

`HttpCache.observe` wraps the whole application with `observing`: a request answered
from an entry is noted in its scope (`note_served`), and a new visitor's cookie set on
its response by a layer outside the cache makes `HttpCache` stop caching the route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atomcache_core.http.answer import sets_a_new_cookie, visitors_own

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from atomcache_core._asgi_run import ASGIApp, Message, Receive, Scope, Send
    from atomcache_core.http.route import RoutePlan

__all__ = ["SERVED", "Served", "note_served", "observing"]

#: The scope key through which the outermost layer (`HttpCache.observe`) learns what the
#: cache sent for a request.
SERVED = "atomcache.served"


class Served:
    """Whether the cache sent one request an entry (computed or not), and of which route."""

    __slots__ = ("route",)

    def __init__(self) -> None:
        self.route: RoutePlan | None = None


def observing(app: ASGIApp, learn: Callable[[RoutePlan], Awaitable[None]]) -> ASGIApp:
    """`app`, calling `learn` with a route whose page from an entry got a new visitor's cookie.

    See `HttpCache.observe`; the cookie is sent only to that visitor (`visitors_own`).
    """

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        served = scope[SERVED] = Served()

        async def watch(message: Message) -> None:
            if (
                message["type"] == "http.response.start"
                and served.route is not None
                and sets_a_new_cookie(scope["headers"], message.get("headers", ()))
            ):
                await learn(served.route)
                message = {**message, "headers": visitors_own(message["headers"])}
            await send(message)

        await app(scope, receive, watch)

    return observed


def note_served(scope: Scope, route: RoutePlan) -> None:
    """Tell `HttpCache.observe` that a request is answered from an entry of `route`.

    Not for `public` routes, whose pages are the same for every visitor by declaration.
    """
    if not route.options.public and (served := scope.get(SERVED)) is not None:
        served.route = route
