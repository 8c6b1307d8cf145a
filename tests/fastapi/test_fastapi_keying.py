"""The keying scenarios (http_keying.py) against the FastAPI adapter, and its own schemes."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, FastAPI, Header, Request, Security
from fastapi.security import APIKeyCookie, APIKeyQuery, HTTPBearer

from atomcache_core import Cache
from atomcache_core.http import parse_cache_control
from atomcache_fastapi import cached, invalidate, setup_cache
from atomcache_fastapi._middleware import plans_of
from http_keying import ask, keying_tests


def auth_request_email(x_auth_request_email: Annotated[str, Header()] = "") -> str:
    """oauth2-proxy's identity header, read by a dependency."""
    return x_auth_request_email


def build(cache: Cache, calls: Counter[str]) -> tuple[FastAPI, Any]:
    """The keying app (routes listed in http_keying.py)."""
    app = FastAPI()
    setup_cache(app, cache)

    def count(name: str) -> int:
        calls[name] += 1
        return calls[name]

    @app.get("/echo/{item}")
    @cached(ttl=60)
    async def echo(item: str, request: Request) -> dict[str, Any]:
        host, root_path = request.headers.get("host"), request.scope.get("root_path")
        url = str(request.url)
        return {"item": item, "url": url, "host": host, "root": root_path, "calls": count("echo")}

    @app.get("/sorted")
    @cached(ttl=60, sort_query=True)
    async def sorted_query(request: Request) -> dict[str, Any]:
        return {"url": str(request.url), "calls": count("sorted")}

    @app.get("/reset/{token}")
    @cached(ttl=60)
    async def reset(token: str, api_key: str = "") -> dict[str, Any]:
        return {"token": token, "api_key": api_key, "calls": count("reset")}

    @app.get("/tenant")
    @cached(ttl=60)
    async def tenant(x_tenant: Annotated[str, Header()] = "") -> dict[str, Any]:
        return {"tenant": x_tenant, "calls": count("tenant")}

    router = APIRouter()

    @router.get("/who")
    @cached(ttl=60)
    async def who(email: Annotated[str, Depends(auth_request_email)]) -> dict[str, Any]:
        return {"email": email, "calls": count("email")}

    app.include_router(router)

    @app.get("/token")
    @cached(ttl=60)
    async def token(token: Annotated[str, Header(alias="X-Token")] = "") -> dict[str, Any]:
        return {"token": token, "calls": count("token")}

    @app.get("/theme")
    @cached(ttl=60)
    async def theme(theme: Annotated[str, Cookie()] = "") -> dict[str, Any]:
        return {"theme": theme, "calls": count("theme")}

    return app, functools.partial(invalidate, app)


test_keying, test_keys_hold_no_secret = keying_tests(build, "FastAPI")

KEY_COOKIE = APIKeyCookie(name="token", auto_error=False)
KEY_QUERY = APIKeyQuery(name="api_key", auto_error=False)
BEARER = HTTPBearer(auto_error=False)


def account(
    token: Annotated[str | None, Security(KEY_COOKIE)],
    region: Annotated[str, Header()] = "",
) -> str:
    """A dependency reading a cookie credential and a plain header."""
    return f"{token}@{region}"


def schemes_app(calls: Counter[str]) -> FastAPI:
    """Routes reading credentials through security schemes, at every level."""
    app = FastAPI()
    setup_cache(app, Cache())
    router = APIRouter(dependencies=[Depends(account)])

    @router.get("/by-cookie")
    @cached(ttl=60)
    async def by_cookie(theme: Annotated[str, Cookie()] = "") -> dict[str, Any]:
        calls["by-cookie"] += 1
        return {"theme": theme, "calls": calls["by-cookie"]}

    @app.get("/by-query")
    @cached(ttl=60)
    async def by_query(key: Annotated[str | None, Security(KEY_QUERY)]) -> dict[str, Any]:
        calls["by-query"] += 1
        return {"key": key, "calls": calls["by-query"]}

    @app.get("/by-bearer")
    @cached(ttl=60)
    async def by_bearer(credentials: Annotated[Any, Depends(BEARER)]) -> dict[str, Any]:
        calls["by-bearer"] += 1
        return {"calls": calls["by-bearer"]}

    app.include_router(router)
    return app


def test_security_schemes_are_found_at_every_level() -> None:
    """Header(), Cookie() and each scheme's field, in the route and its dependencies."""
    plans = {plan.template: plan for plan in plans_of(schemes_app(Counter()))}
    by_cookie = plans["/by-cookie"]
    assert by_cookie.credential_cookies == ("token",)
    assert by_cookie.key_cookies == ("theme",)
    assert by_cookie.key_headers == ("region",)
    assert plans["/by-query"].credential_query == ("api_key",)
    assert plans["/by-query"].personal
    assert "authorization" in plans["/by-bearer"].credentials


async def test_security_scheme_fields_are_credentials() -> None:
    """An APIKeyCookie's cookie bypasses; an APIKeyQuery's key gets its own private entry."""
    calls: Counter[str] = Counter()
    app = schemes_app(calls)
    themed = await ask(app, "/by-cookie", headers=[("cookie", "theme=dark")])
    assert themed.json()["theme"] == "dark"
    carrying = await ask(app, "/by-cookie", headers=[("cookie", "theme=dark; token=t1")])
    assert carrying.cache_status == 'atomcache; fwd=bypass; detail="cookie"'
    assert calls["by-cookie"] == 2
    first = await ask(app, "/by-query", b"api_key=k1")
    other = await ask(app, "/by-query", b"api_key=k2")
    assert [reply.json()["key"] for reply in (first, other)] == ["k1", "k2"]
    assert "private" in parse_cache_control(first.headers["cache-control"])
    bearer = await ask(app, "/by-bearer", headers=[("authorization", "Bearer b")])
    assert bearer.cache_status == 'atomcache; fwd=bypass; detail="authorization"'
