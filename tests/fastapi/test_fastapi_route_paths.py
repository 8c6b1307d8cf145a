"""What runs between FastAPI's router and a cached endpoint runs on hits (HTTP.md 0.1, 0.2).

The fast path (a hit answered before routing) is taken only where nothing but the
endpoint runs after the router: a route class of the application's own, route or
mount middleware, and a `Host` route make the route checked. Served by real uvicorn.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from atomcache_core import Cache
from atomcache_fastapi import cached, setup_cache
from atomcache_fastapi._middleware import plans_of
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from starlette.types import ASGIApp, Receive, Scope, Send

INSIDE = {"x-vpn": "10.8.0.7"}
OUTSIDE = {"x-vpn": "203.0.113.66"}


def on_the_vpn(headers: Any) -> bool:
    """Whether a request comes from the VPN (its address, as a test header carries it)."""
    return str(headers.get("x-vpn", "")).startswith("10.")


class VPNOnlyRoute(APIRoute):
    """A route class that refuses requests from outside the VPN."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Any]]:
        """The route's handler, behind the allow-list."""
        original = super().get_route_handler()

        async def handler(request: Request) -> Any:
            if not on_the_vpn(request.headers):
                return JSONResponse({"detail": "forbidden"}, status_code=403)
            return await original(request)

        return handler


class VPNOnly:
    """ASGI middleware that refuses requests from outside the VPN."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse requests from outside the VPN with 403."""
        headers = {name.decode(): value.decode() for name, value in scope.get("headers", ())}
        if scope["type"] == "http" and not on_the_vpn(headers):
            await JSONResponse({"detail": "forbidden"}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def build(cache: Cache, calls: Counter[str]) -> FastAPI:
    """An app whose cached reports sit behind each kind of route-level check.

    - `/class/report` and `/v1/class/report`: a route class of the app's own;
    - `/route-mw/report`: a Starlette `Route` with middleware;
    - `/mounted/report`: a route under a `Mount` with middleware;
    - `/report`: an ordinary cached route, declared after a `Host` route for
      `admin.shop.example` whose own `/report` is uncached and allow-listed.
    """
    app = FastAPI()
    setup_cache(app, cache)

    def report(name: str) -> Callable[..., Coroutine[Any, Any, dict[str, Any]]]:
        async def endpoint() -> dict[str, Any]:
            calls[name] += 1
            return {"report": "q3", "calls": calls[name]}

        return endpoint

    async def plain(request: Request) -> JSONResponse:
        calls["plain"] += 1
        return JSONResponse({"report": "q3", "path": request.url.path, "calls": calls["plain"]})

    router = APIRouter(route_class=VPNOnlyRoute)
    router.get("/class/report")(cached(ttl=60)(report("class")))
    app.include_router(router)
    app.include_router(router, prefix="/v1")
    app.router.routes.append(
        Route("/route-mw/report", cached(ttl=60)(plain), middleware=[Middleware(VPNOnly)])
    )
    mounted = APIRoute("/report", cached(ttl=60)(report("mounted")), methods=["GET"])
    app.router.routes.append(Mount("/mounted", routes=[mounted], middleware=[Middleware(VPNOnly)]))

    admin = FastAPI()

    @admin.get("/report")
    async def admin_report(request: Request) -> JSONResponse:
        calls["admin"] += 1
        if not on_the_vpn(request.headers):
            return JSONResponse({"detail": "forbidden"}, status_code=403)
        return JSONResponse({"admin": "payroll"})

    app.host("admin.shop.example", admin)
    app.get("/report")(cached(ttl=60)(report("report")))
    return app


def test_route_level_checks_make_routes_checked() -> None:
    """A route class of the app's own, route or mount middleware: no fast path."""
    checked = {plan.template: plan.checked for plan in plans_of(build(Cache(), Counter()))}
    assert checked == {
        "/class/report": True,
        "/v1/class/report": True,
        "/route-mw/report": True,
        "/mounted/report": True,
        "/report": False,
    }


@pytest.mark.parametrize(
    "path", ["/class/report", "/v1/class/report", "/route-mw/report", "/mounted/report"]
)
async def test_route_level_checks_run_on_hits(path: str, namespace: str) -> None:
    """One request from the VPN fills the entry; one from outside is still refused."""
    calls: Counter[str] = Counter()
    app = build(Cache.from_url("memory://", namespace=namespace), calls)
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get(path, headers=INSIDE)).status_code == 200
        hit = await client.get(path, headers=INSIDE)
        assert hit.status_code == 200
        assert hit.headers["cache-status"].startswith("atomcache; hit"), path
        refused = await client.get(path, headers=OUTSIDE)
        assert refused.status_code == 403, path
        assert "q3" not in refused.text
        assert (await client.get(path, headers=INSIDE)).status_code == 200
    assert sum(calls.values()) == 1


async def test_the_host_decides_the_route(namespace: str) -> None:
    """A `Host` route's page is never stored as the cached route's entry of that host."""
    calls: Counter[str] = Counter()
    app = build(Cache.from_url("memory://", namespace=namespace), calls)
    admin = {"host": "admin.shop.example"}
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        for _ in range(2):
            response = await client.get("/report", headers={"host": "www.shop.example"})
            assert response.json()["report"] == "q3"
        allowed = await client.get("/report", headers={**admin, **INSIDE})
        assert allowed.json() == {"admin": "payroll"}
        refused = await client.get("/report", headers={**admin, **OUTSIDE})
        assert refused.status_code == 403
        assert "payroll" not in refused.text
    assert calls == {"report": 1, "admin": 2}
