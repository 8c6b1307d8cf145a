"""The keying scenarios (http_keying.py) against the Litestar adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from litestar import Litestar, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import CookieParameter, FromPath, FromQuery, HeaderParameter

from atomcache_litestar import AtomCachePlugin, cached
from http_keying import keying_tests

if TYPE_CHECKING:
    from collections import Counter

    from atomcache_core import Cache


async def auth_request_email(
    address: Annotated[str, HeaderParameter(name="X-Auth-Request-Email")] = "",
) -> str:
    """oauth2-proxy's identity header, read by a dependency."""
    return address


def build(cache: Cache, calls: Counter[str]) -> tuple[Litestar, Any]:
    """The keying app (routes listed in http_keying.py)."""

    def count(name: str) -> int:
        calls[name] += 1
        return calls[name]

    @get("/echo/{item:str}")
    @cached(ttl=60)
    async def echo(item: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
        host, root_path = request.headers.get("host"), request.scope.get("root_path")
        url = str(request.url)
        return {"item": item, "url": url, "host": host, "root": root_path, "calls": count("echo")}

    @get("/sorted")
    @cached(ttl=60, sort_query=True)
    async def sorted_query(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return {"url": str(request.url), "calls": count("sorted")}

    @get("/reset/{token:str}")
    @cached(ttl=60)
    async def reset(token: FromPath[str], api_key: FromQuery[str] = "") -> dict[str, Any]:
        return {"token": token, "api_key": api_key, "calls": count("reset")}

    @get("/tenant")
    @cached(ttl=60)
    async def tenant(
        x_tenant: Annotated[str, HeaderParameter(name="X-Tenant")] = "",
    ) -> dict[str, Any]:
        return {"tenant": x_tenant, "calls": count("tenant")}

    @get("/who", dependencies={"email": Provide(auth_request_email)})
    @cached(ttl=60)
    async def who(email: NamedDependency[str]) -> dict[str, Any]:
        return {"email": email, "calls": count("email")}

    @get("/token")
    @cached(ttl=60)
    async def token(token: Annotated[str, HeaderParameter(name="X-Token")] = "") -> dict[str, Any]:
        return {"token": token, "calls": count("token")}

    @get("/theme")
    @cached(ttl=60)
    async def theme(theme: Annotated[str, CookieParameter(name="theme")] = "") -> dict[str, Any]:
        return {"theme": theme, "calls": count("theme")}

    plugin = AtomCachePlugin(cache)
    handlers = [echo, sorted_query, reset, tenant, who, token, theme]
    return Litestar(handlers, plugins=[plugin]), plugin.invalidate


test_keying, test_keys_hold_no_secret = keying_tests(build, "Litestar")
