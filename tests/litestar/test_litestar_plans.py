"""How the Litestar adapter plans each cached handler once: fast path or checks first."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from litestar import Controller, Litestar, get, head
from litestar_app import build_app, require_user

from atomcache_core import Cache
from atomcache_litestar import AtomCachePlugin, cached
from atomcache_litestar._plugin import _plan_routes
from support.servers import serve_asgi


def plans(app: Litestar) -> dict[str, bool]:
    """Whether each cached handler of `app` runs checks before a hit, by path template."""
    return {plan.template: plan.checked for _, plan in _plan_routes(app)}


def reports() -> type[Controller]:
    """A new controller whose guard covers its handler (an app takes a handler once)."""

    class Reports(Controller):
        path = "/reports"
        guards = [require_user]  # noqa: RUF012 - Litestar's layer attribute

        @get("/")
        @cached(ttl=60, public=True)
        async def latest(self) -> dict[str, str]:
            return {"figures": "confidential"}

    return Reports


@get("/report")
@cached(ttl=60, public=True)
async def report() -> dict[str, str]:
    """A report, guarded by the app."""
    return {"figures": "confidential"}


def test_only_handlers_without_checks_take_the_fast_path() -> None:
    """Guards, dependencies, before_request, own middleware, decorators: checked."""
    for layout, prefix in (("app", ""), ("router", "/api"), ("nested", "/api/v1")):
        checked = plans(build_app(Cache(), Counter(), {}, layout)[0])
        assert checked[f"{prefix}/items"] is False, layout
        assert checked[f"{prefix}/deps"] is True  # it asks for a dependency
        for path in (
            "route",
            "param",
            "api-key",
            "decorated",
            "router",
            "sync",
            "middleware",
            "before",
        ):
            assert checked[f"{prefix}/guarded/{path}"] is True, (layout, path)
    assert plans(Litestar([reports()])) == {"/reports": True}
    assert plans(Litestar([report], guards=[require_user])) == {"/report": True}


async def test_controller_guards_run_on_hits(namespace: str) -> None:
    """A controller's guard refuses anonymous requests of a stored page."""
    cache = Cache.from_url("memory://", namespace=namespace)
    app = Litestar([reports()], plugins=[AtomCachePlugin(cache)])
    valid = {"cookie": "session=valid"}
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/reports", headers=valid)).status_code == 200
        hit = await client.get("/reports", headers=valid)
        assert hit.headers["cache-status"].startswith("atomcache; hit")
        assert (await client.get("/reports")).status_code == 401


@pytest.mark.parametrize("in_thread", [True, False])
async def test_sync_handlers_are_cached(in_thread: bool, namespace: str) -> None:  # noqa: FBT001 - a parameter
    """A plain `def` handler is cached, run in a thread or in the loop."""
    calls: list[int] = []

    @get("/report", sync_to_thread=in_thread)
    @cached(ttl=60)
    def report() -> dict[str, int]:
        calls.append(1)
        return {"calls": len(calls)}

    app = Litestar(
        [report], plugins=[AtomCachePlugin(Cache.from_url("memory://", namespace=namespace))]
    )
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        responses = [await client.get("/report") for _ in range(3)]
    assert [response.json() for response in responses] == [{"calls": 1}] * 3
    assert responses[2].headers["cache-status"].startswith("atomcache; hit")


async def test_an_apps_own_head_handler_answers_head(namespace: str) -> None:
    """A `@head` handler of the app (and its guard) answers HEAD next to a cached GET."""

    @get("/doc")
    @cached(ttl=60)
    async def doc() -> dict[str, str]:
        return {"doc": "body"}

    @head("/doc", guards=[require_user])
    async def doc_head() -> None:
        return None

    cache = Cache.from_url("memory://", namespace=namespace)
    app = Litestar([doc, doc_head], plugins=[AtomCachePlugin(cache)])
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/doc")).status_code == 200
        assert (await client.head("/doc")).status_code == 401
        allowed = await client.head("/doc", headers={"cookie": "session=valid"})
        assert allowed.status_code == 200
        assert "cache-status" not in allowed.headers
