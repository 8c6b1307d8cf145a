"""The Litestar app of the shared HTTP scenarios (routes listed in http_scenarios.py)."""

from __future__ import annotations

import asyncio
import functools
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Litestar, Request, Response, Router, asgi, get, post
from litestar.background_tasks import BackgroundTask
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.dto import DataclassDTO, DTOConfig
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.middleware import ASGIMiddleware
from litestar.params import CookieParameter, FromPath, FromQuery, HeaderParameter
from litestar.response import Stream

from atomcache_litestar import AtomCachePlugin, cached
from http_scenarios import DATED_HEADERS, GREETINGS, PROFILES, slow_chunks, slow_task

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler
    from litestar.types import (
        ASGIApp,
        HTTPResponseBodyEvent,
        HTTPResponseStartEvent,
        Receive,
        Scope,
        Send,
    )

    from atomcache_core import Cache
    from atomcache_core.asgi import RequestInfo


@dataclass
class Item:
    """An item; the DTO keeps `secret` out of responses."""

    id: int
    name: str
    secret: str


@dataclass
class ItemPage:
    """A page of items."""

    calls: int
    items: list[Item]


class PageDTO(DataclassDTO[ItemPage]):
    """What clients may see of a page: no item secrets."""

    config = DTOConfig(exclude={"items.0.secret"})


class Session:
    """A dependency that is a new object on every request."""


def item_tags(info: RequestInfo) -> Iterable[str]:
    """Tags computed from the request: one per item."""
    return ("tagged", f"item:{info.path_params['item_id']}")


def require_user(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A login guard: 401 unless the session cookie is valid."""
    if connection.cookies.get("session") != "valid":
        raise NotAuthorizedException


def require_user_or_503(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """A login guard whose service fails: 503 unless the session cookie is valid."""
    if connection.cookies.get("session") != "valid":
        raise HTTPException(status_code=503, detail="auth service unavailable")


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """An API key guard on the X-API-Key header: 401 without, 403 when wrong."""
    key = connection.headers.get("x-api-key")
    if key is None:
        raise NotAuthorizedException
    if key != "k1":
        raise PermissionDeniedException


def current_user(request: Request[Any, Any, Any]) -> str:
    """A dependency that refuses anonymous requests."""
    if request.cookies.get("session") != "valid":
        raise NotAuthorizedException
    return "u1"


async def refuse_anonymous(request: Request[Any, Any, Any]) -> Response[None] | None:
    """A before_request hook answering 401 itself unless the session cookie is valid."""
    if request.cookies.get("session") != "valid":
        return Response(None, status_code=401)
    return None


class MembersOnly(ASGIMiddleware):
    """App-level middleware: 401 for paths under /members without the session."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Refuse /members/... unless the session cookie is valid."""
        if "/members/" in scope["path"]:
            await LoginMiddleware().handle(scope, receive, send, next_app)
            return
        await next_app(scope, receive, send)


class LoginMiddleware(ASGIMiddleware):
    """Route-level middleware answering 401 unless the session cookie is valid."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Let the request through only with the valid session cookie."""
        cookies = dict(scope.get("headers", ())).get(b"cookie", b"")
        if b"session=valid" not in cookies:
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": 401,
                "headers": [],
            }
            body: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": b"",
                "more_body": False,
            }
            await send(start)
            await send(body)
            return
        await next_app(scope, receive, send)


def staff_only(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator placed above @cached: 403 unless the request says X-Staff: yes."""

    @functools.wraps(endpoint)
    async def checked(request: Request[Any, Any, Any], *args: Any, **kwargs: Any) -> Any:
        if request.headers.get("x-staff") != "yes":
            raise PermissionDeniedException
        return await endpoint(*args, **kwargs)

    signature = inspect.signature(endpoint)
    parameter = inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    checked.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), parameter]
    )
    checked.__annotations__ = {**endpoint.__annotations__, "request": Request}
    return checked


def build_app(
    cache: Cache, calls: Counter[str], flags: dict[str, Any], layout: str = "app"
) -> tuple[Litestar, AtomCachePlugin]:
    """The scenario routes on Litestar, counting handler calls in `calls`.

    `layout` says where the handlers are declared: `"app"` (on the app), `"router"`
    (a `Router` at `/api`) or `"nested"` (a router at `/v1` inside one at `/api`).
    """
    handlers = _handlers(calls, flags)
    if layout == "router":
        handlers = [Router("/api", route_handlers=handlers)]
    elif layout == "nested":
        handlers = [Router("/api", route_handlers=[Router("/v1", route_handlers=handlers)])]
    plugin = AtomCachePlugin(cache)
    return Litestar(handlers, middleware=[MembersOnly()], plugins=[plugin]), plugin


def _handlers(calls: Counter[str], flags: dict[str, Any]) -> list[Any]:  # noqa: C901, PLR0915 - one route per scenario
    def count(name: str) -> int:
        calls[name] += 1
        return calls[name]

    @get("/items", return_dto=PageDTO)
    @cached(ttl=60)
    async def items(offset: FromQuery[int] = 0, limit: FromQuery[int] = 10) -> ItemPage:
        rows = [Item(i, f"item {i}", "hidden") for i in range(offset, offset + limit)]
        return ItemPage(count("items"), rows)

    @get("/items/{item_id:int}")
    @cached(ttl=60)
    async def item(item_id: FromPath[int]) -> dict[str, Any]:
        return {"calls": count("item"), "item": {"id": item_id, "version": flags.get("version", 1)}}

    @post("/items")
    async def create() -> dict[str, Any]:
        return {"calls": count("create")}

    @get("/status/{code:int}")
    @cached(ttl=60)
    async def status(code: FromPath[int]) -> Response[dict[str, Any]]:
        return Response({"calls": count("status")}, status_code=code)

    @get("/boom")
    @cached(ttl=60)
    async def boom() -> dict[str, Any]:
        count("boom")
        msg = "the handler failed"
        raise RuntimeError(msg)

    @get("/cookie")
    @cached(ttl=60)
    async def cookie() -> Response[dict[str, Any]]:
        number = count("cookie")
        return Response({"calls": number}, cookies=[Cookie(key="session", value=f"user-{number}")])

    @get("/directive/{value:str}")
    @cached(ttl=60)
    async def directive(value: FromPath[str]) -> Response[dict[str, Any]]:
        return Response({"calls": count("directive")}, headers={"cache-control": value})

    @get("/stream")
    @cached(ttl=60)
    async def stream() -> Stream:
        count("stream")

        async def chunks() -> AsyncIterator[bytes]:
            for index in range(3):
                yield f"chunk {index}\n".encode()

        return Stream(chunks(), media_type="text/plain")

    @get("/big")
    @cached(ttl=60, max_body_size=1024)
    async def big() -> Response[bytes]:
        count("big")
        return Response(b"x" * 2048, media_type="application/octet-stream")

    @get("/shared")
    @cached(ttl=60)
    async def shared() -> dict[str, Any]:
        return {"calls": count("shared")}

    @get("/per-user")
    @cached(ttl=60, vary_on=("authorization",))
    async def per_user(
        authorization: Annotated[str, HeaderParameter(name="authorization")] = "",
    ) -> dict[str, Any]:
        return {"calls": count("per-user"), "auth": authorization}

    @get("/per-user/lang")
    @cached(ttl=60, vary_on=("authorization", "accept-language"))
    async def per_user_lang(
        accept_language: Annotated[str, HeaderParameter(name="accept-language")] = "",
    ) -> dict[str, Any]:
        return {"calls": count("per-user-lang"), "lang": accept_language}

    @get("/by-user/{item_id:int}")
    @cached(ttl=60, vary_on=("authorization",))
    async def by_user(
        item_id: FromPath[int],
        authorization: Annotated[str, HeaderParameter(name="authorization")] = "",
    ) -> dict[str, Any]:
        return {"calls": count("by-user"), "auth": authorization, "item": item_id}

    @get("/lang")
    @cached(ttl=60, vary_on=("accept-language",))
    async def lang(
        accept_language: Annotated[str, HeaderParameter(name="accept-language")] = "",
    ) -> dict[str, Any]:
        return {"calls": count("lang"), "lang": accept_language}

    @get("/deps", dependencies={"session": Provide(Session, sync_to_thread=False)})
    @cached(ttl=60)
    async def deps(session: NamedDependency[Session]) -> dict[str, Any]:
        return {"calls": count("deps"), "session": type(session).__name__}

    @get("/slow")
    @cached(ttl=60)
    async def slow() -> dict[str, Any]:
        await asyncio.sleep(0.2)
        return {"calls": count("slow")}

    @get("/stale")
    @cached(ttl=1, stale_ttl=30)
    async def stale() -> dict[str, Any]:
        number = count("stale")
        await asyncio.sleep(1.0)
        return {"calls": number}

    @get("/flaky")
    @cached(ttl=1, stale_if_error=1)
    async def flaky() -> dict[str, Any]:
        number = count("flaky")
        if flags.get("fail"):
            msg = "upstream down"
            raise RuntimeError(msg)
        return {"calls": number}

    @get("/tagged/{item_id:int}")
    @cached(ttl=60, tags=item_tags)
    async def tagged(item_id: FromPath[int]) -> dict[str, Any]:
        return {"calls": count("tagged"), "id": item_id}

    @get("/public")
    @cached(ttl=60, cache_control="public, max-age=3600, s-maxage=600")
    async def public() -> dict[str, Any]:
        return {"calls": count("public")}

    @get("/ignore")
    @cached(ttl=60, no_cache="ignore")
    async def ignore() -> dict[str, Any]:
        return {"calls": count("ignore")}

    @get("/refresh")
    @cached(ttl=60, min_refresh_interval=0.5)
    async def refresh() -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return {"calls": count("refresh")}

    @get("/refresh/now")
    @cached(ttl=60, min_refresh_interval=0)
    async def refresh_now() -> dict[str, Any]:
        return {"calls": count("refresh-now")}

    @get("/header")
    @cached(ttl=60)
    async def header() -> Response[dict[str, Any]]:
        return Response({"calls": count("header")}, headers={"x-custom": "yes"})

    @get("/constant")
    @cached(ttl=60)
    async def constant() -> dict[str, Any]:
        count("constant")
        return {"constant": True}

    @get("/fragile")
    @cached(ttl=60)
    async def fragile(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        number = count("fragile")
        too_long = any(len(value) > 1000 for value in request.headers.values())
        return Response({"calls": number}, status_code=400 if too_long else 200)

    @get("/background")
    @cached(ttl=60)
    async def background(
        fail: FromQuery[bool] = False,  # noqa: FBT002 - a query flag
    ) -> Response[dict[str, Any]]:
        task = BackgroundTask(slow_task, fail=fail)
        return Response({"calls": count("background")}, background=task)

    @get("/stream/slow")
    @cached(ttl=60)
    async def slow_stream() -> Stream:
        count("slow-stream")
        return Stream(slow_chunks(), media_type="text/plain")

    @get("/negotiated")
    @cached(ttl=60)
    async def negotiated(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
        text = GREETINGS.get(request.headers.get("accept-language", ""), "hello")
        count("negotiated")
        return Response({"text": text}, headers={"vary": "Accept-Language"})

    @get("/negotiated/any")
    @cached(ttl=60)
    async def negotiated_any() -> Response[dict[str, int]]:
        return Response({"calls": count("vary-star")}, headers={"vary": "*"})

    @get("/dated")
    @cached(ttl=60)
    async def dated() -> Response[dict[str, int]]:
        return Response({"calls": count("dated")}, headers=DATED_HEADERS)

    @get("/sorted")
    @cached(ttl=60, sort_query=True)
    async def sorted_query(
        offset: FromQuery[int] = 0, limit: FromQuery[int] = 10
    ) -> dict[str, Any]:
        return {"calls": count("sorted"), "offset": offset, "limit": limit}

    @get("/guarded/route", guards=[require_user])
    @cached(ttl=60, public=True)
    async def guarded_route() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @get("/guarded/param", dependencies={"user": Provide(current_user, sync_to_thread=False)})
    @cached(ttl=60, public=True)
    async def guarded_param(user: NamedDependency[str]) -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential", "user": user}

    @get("/guarded/api-key", guards=[require_api_key])
    @cached(ttl=60, public=True)
    async def guarded_api_key() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @get("/guarded/decorated")
    @staff_only
    @cached(ttl=60, public=True)
    async def guarded_decorated() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @get("/router")
    @cached(ttl=60, public=True)
    async def guarded_router() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @get("/guarded/sync", guards=[require_user], sync_to_thread=True)
    @cached(ttl=60, public=True)
    def guarded_sync() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @get("/members/report")
    @cached(ttl=60, public=True)
    async def members_report() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @get("/guarded/flaky", guards=[require_user_or_503])
    @cached(ttl=1, stale_if_error=60, public=True)
    async def guarded_flaky() -> dict[str, Any]:
        return {"calls": count("flaky-check"), "figures": "confidential"}

    @get("/guarded/middleware", middleware=[LoginMiddleware()])
    @cached(ttl=60, public=True)
    async def guarded_middleware() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @get("/guarded/before", before_request=refuse_anonymous)
    @cached(ttl=60, public=True)
    async def guarded_before() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @get("/me")
    @cached(ttl=60)
    async def me(
        session: Annotated[str | None, CookieParameter(name="session")] = None,
    ) -> dict[str, Any]:
        return {"calls": count("me"), **PROFILES[session]}

    @get("/me/keyed")
    @cached(ttl=60, vary_on_cookies=("session",))
    async def me_keyed(
        session: Annotated[str | None, CookieParameter(name="session")] = None,
    ) -> dict[str, Any]:
        return {"calls": count("me"), **PROFILES[session]}

    @get("/profile/by-key")
    @cached(ttl=60, vary_on=("x-api-key",))
    async def profile_by_key(
        key: Annotated[str | None, HeaderParameter(name="x-api-key")] = None,
    ) -> dict[str, Any]:
        return {"calls": count("by-key"), "key": key}

    @get("/reset", name="reset")
    async def reset() -> dict[str, str]:
        return {"reset": "form"}

    @get("/link", media_type="text/html")
    @cached(ttl=60)
    async def link(request: Request[Any, Any, Any]) -> str:
        count("link")
        return f'<form action="{request.url_for("reset")}" method="post"></form>'

    @get("/grouped/one")
    @cached(ttl=60, namespace="grouped")
    async def grouped_one() -> dict[str, Any]:
        return {"calls": count("grouped"), "route": "one"}

    @get("/grouped/two")
    @cached(ttl=60, namespace="grouped")
    async def grouped_two() -> dict[str, Any]:
        return {"calls": count("grouped"), "route": "two"}

    checked = Router("/guarded", guards=[require_user], route_handlers=[guarded_router])
    return [
        items, item, create, status, boom, cookie, directive, stream, big, shared, per_user,
        by_user, per_user_lang, refresh_now,
        lang, deps, slow, stale, flaky, tagged, public, ignore, refresh, header, constant,
        fragile, background, slow_stream, negotiated, negotiated_any, dated, sorted_query,
        members_report, guarded_flaky,
        guarded_route, guarded_sync, guarded_param, guarded_api_key,
        guarded_decorated,
        checked, guarded_middleware, guarded_before, me, me_keyed, profile_by_key, reset, link,
        grouped_one, grouped_two,
    ]  # fmt: skip


def build_mounted(cache: Cache, calls: Counter[str]) -> Any:
    """Two apps sharing `cache`, mounted at `/a` and `/b`, each with `GET /items`.

    The one at `/b` guards every request at app level (`Litestar(guards=...)`). They
    are mounted the Litestar way (`@asgi(path, is_mount=True)`), which takes the prefix
    off `path` and leaves `root_path` empty.
    """
    mounts = []
    for name, guards in (("a", []), ("b", [require_user])):
        items = get("/items")(cached(ttl=60, public=True)(_counted(name, calls)))
        child = Litestar([items], guards=guards, plugins=[AtomCachePlugin(cache)])
        mounts.append(asgi(f"/{name}", is_mount=True, copy_scope=True)(_forward(child)))
    return Litestar(mounts)


def _forward(app: Litestar) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def forward(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)

    return forward


def _counted(name: str, calls: Counter[str]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def items() -> dict[str, Any]:
        calls[name] += 1
        return {"app": name, "calls": calls[name]}

    return items


def build_compressed(cache: Cache, calls: Counter[str]) -> Litestar:
    """`GET /text` (2,000 bytes) and `GET /small` (10) with Litestar's compression, and CORS."""

    @get("/text", media_type="text/plain")
    @cached(ttl=60)
    async def text() -> str:
        calls["text"] += 1
        return "x" * 2000

    @get("/small", media_type="text/plain")
    @cached(ttl=60)
    async def small() -> str:
        calls["small"] += 1
        return "y" * 10

    return Litestar(
        [text, small],
        compression_config=CompressionConfig(backend="gzip", minimum_size=500),
        cors_config=CORSConfig(allow_origins=["https://a.example", "https://b.example"]),
        plugins=[AtomCachePlugin(cache)],
    )
