"""The scenarios of http_safety.py against the FastAPI adapter, on a real uvicorn server."""

from __future__ import annotations

import asyncio
import functools
import secrets
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from atomcache_core import Cache
from atomcache_core.asgi import REFRESH
from atomcache_fastapi import cached, setup_cache
from http_safety import REFUSAL, DoubleSubmitCsrf, safety_tests
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Awaitable, Callable


async def staff_only(request: Request) -> None:
    """A check that hides what it refuses: 404 unless `X-Staff: yes` (held with `X-Hold`)."""
    if request.headers.get("x-staff") != "yes":
        await REFUSAL.held(request.headers)
        raise HTTPException(404)


def login_first(endpoint: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A decorator above `@cached`: a redirect to /login unless `X-Staff: yes`."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
        if request.headers.get("x-staff") != "yes":
            return RedirectResponse("/login", status_code=302)
        return await endpoint(request, *args, **kwargs)

    return wrapper


def build(cache: Cache, calls: Counter[str], prefix: str = "") -> FastAPI:
    """The routes of http_safety.py, on the app, or on a router included at `prefix`."""
    app = FastAPI()
    routes = APIRouter() if prefix else app
    app.add_middleware(SessionMiddleware, secret_key="test-secret")  # noqa: S106 - a test key
    app.add_middleware(DoubleSubmitCsrf)
    setup_cache(app, cache)

    @routes.get("/hidden/{item_id}", dependencies=[Depends(staff_only)])
    @cached(ttl=60, statuses=(200, 404))
    async def hidden(item_id: int) -> dict[str, int]:
        calls["hidden"] += 1
        return {"item": item_id, "calls": calls["hidden"]}

    @routes.get("/login-first")
    @login_first
    @cached(ttl=60, statuses=(200, 302))
    async def report(request: Request) -> dict[str, Any]:
        calls["login-first"] += 1
        return {"calls": calls["login-first"]}

    def form(request: Request) -> dict[str, Any]:
        calls["form"] += 1
        token = request.session.setdefault("csrf", secrets.token_hex(8))
        return {"csrf": token, "calls": calls["form"]}

    routes.get("/form")(cached(ttl=60)(form))
    routes.get("/form/keyed")(cached(ttl=60, vary_on_cookies=("session",))(form))

    @routes.get("/shared")
    @cached(ttl=60)
    async def shared() -> dict[str, int]:
        calls["shared"] += 1
        return {"calls": calls["shared"]}

    async def csrf_form(request: Request) -> dict[str, Any]:
        calls["csrf-form"] += 1
        return {"csrf": request.state.csrf}

    routes.get("/csrf-form")(cached(ttl=60)(csrf_form))
    routes.get("/csrf-form/themed")(cached(ttl=60, vary_on_cookies=("theme",))(csrf_form))

    @routes.get("/warm")
    @cached(ttl=60, refresh_ahead=True)
    async def warm() -> dict[str, int]:
        calls["warm"] += 1
        return {"calls": calls["warm"]}

    @routes.get("/obs-etag")
    @cached(ttl=60)
    async def obs_etag() -> Response:
        calls["obs-etag"] += 1
        return Response(b"menu", headers={"etag": '"caf\xe9"'})

    if isinstance(routes, APIRouter):
        app.include_router(routes, prefix=prefix)
    return app


served, test_safety, test_visitors, test_one_off_urls_are_not_kept_warm = safety_tests(
    build, "FastAPI"
)


async def test_refresh_ahead_replays_carry_no_credentials(namespace: str) -> None:
    """A public route kept warm behind a login is replayed without the reader's cookie.

    No replay acts as a caller who read the entry: its check refuses it, and the entry is
    left to expire rather than renewed as someone.
    """
    replays: list[str | None] = []
    replayed = asyncio.Event()

    def logged_in(request: Request) -> None:
        if request.scope.get("state", {}).get(REFRESH) is not None:
            replays.append(request.headers.get("cookie"))
            replayed.set()
        if request.cookies.get("session") != "bob":
            raise HTTPException(401)

    app = FastAPI()
    setup_cache(app, Cache.from_url("memory://", namespace=namespace))

    @app.get("/report", dependencies=[Depends(logged_in)])
    @cached(ttl=1.2, public=True, refresh_ahead=True)
    async def report() -> dict[str, str]:
        return {"figures": "q3"}

    bob = {"cookie": "session=bob"}
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/report", headers=bob)).status_code == 200
        hit = await client.get("/report", headers=bob)
        assert hit.headers["cache-status"].startswith("atomcache; hit")
        await asyncio.wait_for(replayed.wait(), 5)
    assert replays
    assert all(cookie is None for cookie in replays)
