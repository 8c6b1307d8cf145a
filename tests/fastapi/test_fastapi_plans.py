"""How the FastAPI adapter plans each cached route once: fast path or checks first."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.security import APIKeyHeader
from fastapi_app import build_app, require_user

from atomcache_core import Cache
from atomcache_fastapi import cached, invalidate, setup_cache
from atomcache_fastapi._middleware import plans_of
from support.servers import in_process, serve_asgi

TOKEN = APIKeyHeader(name="X-Token", auto_error=False)


def plans(app: FastAPI) -> dict[str, bool]:
    """Whether each cached route of `app` runs checks before a hit, by full template."""
    return {plan.template: plan.checked for plan in plans_of(app)}


def test_only_routes_without_checks_take_the_fast_path() -> None:
    """Dependencies at any level, Security and decorators above @cached make a route checked."""
    for layout, prefix in (("app", ""), ("router", "/api"), ("nested", "/api/v1")):
        checked = plans(build_app(Cache(), Counter(), {}, layout))
        assert checked[f"{prefix}/items"] is False, layout
        assert checked[f"{prefix}/header"] is False  # Request and Response are not checks
        for path in ("route", "param", "api-key", "decorated", "router", "sync"):
            assert checked[f"{prefix}/guarded/{path}"] is True, (layout, path)
    app = FastAPI(dependencies=[Depends(require_user)])

    @app.get("/x")
    @cached(ttl=1)
    async def x() -> dict[str, str]:
        return {}

    assert plans(app) == {"/x": True}


async def test_api_key_headers_are_credentials(namespace: str) -> None:
    """A route whose Security reads X-Token bypasses requests carrying it unless keyed on it."""
    app = FastAPI()
    setup_cache(app, Cache.from_url("memory://", namespace=namespace))
    router = APIRouter()

    @router.get("/data")
    @cached(ttl=60)
    async def data(
        request: Request, token: Annotated[str | None, Security(TOKEN)]
    ) -> dict[str, str]:
        return {"token": token or "", "path": request.url.path}

    app.include_router(router, prefix="/v1")
    (plan,) = plans_of(app)
    assert "x-token" in plan.credentials
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        await client.get("/v1/data")
        carrying = await client.get("/v1/data", headers={"x-token": "t1"})
        assert carrying.json()["token"] == "t1"  # noqa: S105 - a test token
        assert carrying.headers["cache-status"] == 'atomcache; fwd=bypass; detail="x-token"'


async def test_an_endpoint_on_two_routes_is_invalidated_on_both(namespace: str) -> None:
    """`invalidate(app, endpoint)` drops the entries of every route serving the endpoint."""
    app = FastAPI()
    setup_cache(app, Cache.from_url("memory://", namespace=namespace))

    @cached(ttl=60)
    async def catalogue() -> dict[str, str]:
        return {"items": "all"}

    app.get("/catalogue")(catalogue)
    app.get("/v2/catalogue")(catalogue)
    async with in_process(app) as client:
        for path in ("/catalogue", "/v2/catalogue"):
            await client.get(path)
        assert await invalidate(app, catalogue) == 2
        for path in ("/catalogue", "/v2/catalogue"):
            again = await client.get(path)
            assert again.headers["cache-status"].startswith("atomcache; fwd=miss"), path
