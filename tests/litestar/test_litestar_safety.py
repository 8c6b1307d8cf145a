"""The scenarios of http_safety.py against the Litestar adapter, on a real uvicorn server."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Router, get
from litestar.exceptions import NotFoundException
from litestar.middleware import DefineMiddleware
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.params import FromPath  # noqa: TC002 - Litestar reads annotations at run time
from litestar.response import Redirect, Response

from atomcache_litestar import AtomCachePlugin, cached
from http_safety import REFUSAL, DoubleSubmitCsrf, safety_tests

if TYPE_CHECKING:
    from collections import Counter

    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler

    from atomcache_core import Cache


async def staff_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard that hides what it refuses: 404 unless `X-Staff: yes` (held with `X-Hold`)."""
    if connection.headers.get("x-staff") != "yes":
        await REFUSAL.held(connection.headers)
        raise NotFoundException


def login_first(request: Request[Any, Any, Any]) -> Redirect | None:
    """A before_request hook: a redirect to /login unless `X-Staff: yes`."""
    if request.headers.get("x-staff") != "yes":
        return Redirect("/login", status_code=302)
    return None


def build(cache: Cache, calls: Counter[str], prefix: str = "") -> Litestar:
    """The routes of http_safety.py, on the app, or on a router at `prefix`."""

    @get("/hidden/{item_id:int}", guards=[staff_only])
    @cached(ttl=60, statuses=(200, 404))
    async def hidden(item_id: FromPath[int]) -> dict[str, int]:
        calls["hidden"] += 1
        return {"item": item_id, "calls": calls["hidden"]}

    @get("/login-first", before_request=login_first)
    @cached(ttl=60, statuses=(200, 302))
    async def report() -> dict[str, Any]:
        calls["login-first"] += 1
        return {"calls": calls["login-first"]}

    def form(request: Request[Any, Any, Any]) -> dict[str, Any]:
        calls["form"] += 1
        session = dict(request.session)
        token = session.setdefault("csrf", secrets.token_hex(8))
        request.set_session(session)
        return {"csrf": token, "calls": calls["form"]}

    plain = get("/form", sync_to_thread=False)(cached(ttl=60)(form))
    keyed = get("/form/keyed", sync_to_thread=False, name="keyed")(
        cached(ttl=60, vary_on_cookies=("session",))(form)
    )

    @get("/shared")
    @cached(ttl=60)
    async def shared() -> dict[str, int]:
        calls["shared"] += 1
        return {"calls": calls["shared"]}

    async def show_csrf(request: Request[Any, Any, Any]) -> dict[str, Any]:
        calls["csrf-form"] += 1
        return {"csrf": request.scope["state"]["csrf"]}

    csrf_form = get("/csrf-form")(cached(ttl=60)(show_csrf))
    themed = get("/csrf-form/themed", name="themed")(
        cached(ttl=60, vary_on_cookies=("theme",))(show_csrf)
    )

    @get("/warm")
    @cached(ttl=60, refresh_ahead=True)
    async def warm() -> dict[str, int]:
        calls["warm"] += 1
        return {"calls": calls["warm"]}

    @get("/obs-etag")
    @cached(ttl=60)
    async def obs_etag() -> Response[bytes]:
        calls["obs-etag"] += 1
        return Response(b"menu", headers={"etag": '"caf\xe9"'})

    handlers: list[Any] = [hidden, report, plain, keyed, shared, csrf_form, themed, warm, obs_etag]
    return Litestar(
        [Router(prefix, route_handlers=handlers)] if prefix else handlers,
        middleware=[
            ServerSideSessionConfig(
                exclude=["/hidden", "/login-first", "/shared", "/warm", "/obs-etag", "/csrf"]
            ).middleware,
            DefineMiddleware(DoubleSubmitCsrf),  # type: ignore[arg-type]  # plain ASGI types
        ],
        plugins=[AtomCachePlugin(cache)],
    )


served, test_safety, test_visitors, test_one_off_urls_are_not_kept_warm = safety_tests(
    build, "Litestar"
)
