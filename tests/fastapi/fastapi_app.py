"""The FastAPI app of the shared HTTP scenarios (routes listed in http_scenarios.py)."""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Request,
    Security,
)
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from atomcache_fastapi import cached, setup_cache
from http_scenarios import DATED_HEADERS, GREETINGS, PROFILES, slow_chunks, slow_task

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from starlette.types import ASGIApp, Receive, Scope, Send

    from atomcache_core import Cache
    from atomcache_core.asgi import RequestInfo


class PublicItem(BaseModel):
    """What clients may see of an item: the response model filters the rest out."""

    id: int
    name: str


class ItemPage(BaseModel):
    """A page of items."""

    calls: int
    items: list[PublicItem]


class Session:
    """A dependency that is a new object on every request."""


def item_tags(info: RequestInfo) -> Iterable[str]:
    """Tags computed from the request: one per item."""
    return ("tagged", f"item:{info.path_params['item_id']}")


API_KEY = APIKeyHeader(name="x-api-key", auto_error=False)


class MembersOnly:
    """App-level ASGI middleware: 401 for paths under /members without the session."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse /members/... unless the session cookie is valid."""
        if scope["type"] == "http" and "/members/" in scope["path"]:
            cookie = dict(scope["headers"]).get(b"cookie", b"")
            if b"session=valid" not in cookie:
                await JSONResponse({"detail": "members only"}, status_code=401)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def require_user(request: Request) -> str:
    """A login check: 401 unless the session cookie is valid."""
    if request.cookies.get("session") != "valid":
        raise HTTPException(401)
    return "u1"


def require_user_or_503(request: Request) -> None:
    """A login check whose service fails: 503 unless the session cookie is valid."""
    if request.cookies.get("session") != "valid":
        raise HTTPException(503, "auth service unavailable")


def require_api_key(key: Annotated[str | None, Security(API_KEY)]) -> str:
    """An API key check on the X-API-Key header: 401 without, 403 when wrong."""
    if key is None:
        raise HTTPException(401)
    if key != "k1":
        raise HTTPException(403)
    return key


def staff_only(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator placed above @cached: 403 unless the request says X-Staff: yes."""

    @functools.wraps(endpoint)
    async def checked(request: Request, *args: Any, **kwargs: Any) -> Any:
        if request.headers.get("x-staff") != "yes":
            raise HTTPException(403)
        return await endpoint(*args, **kwargs)

    signature = inspect.signature(endpoint)
    parameter = inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    checked.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), parameter]
    )
    return checked


def build_app(
    cache: Cache, calls: Counter[str], flags: dict[str, Any], layout: str = "app"
) -> FastAPI:
    """The scenario routes on FastAPI, counting handler calls in `calls`.

    `layout` says where the routes are declared: `"app"` (on the app), `"router"`
    (an `APIRouter` included with the prefix `/api`) or `"nested"` (a router included
    in another, prefixes `/api` and `/v1`).
    """
    app = FastAPI()
    app.add_middleware(MembersOnly)  # before the cache: it must still run on hits
    setup_cache(app, cache)
    routes = APIRouter() if layout != "app" else app.router
    _add_routes(routes, calls, flags)
    if layout == "router":
        app.include_router(routes, prefix="/api")
    elif layout == "nested":
        outer = APIRouter()
        outer.include_router(routes, prefix="/v1")
        app.include_router(outer, prefix="/api")
    return app


def _add_routes(app: APIRouter, calls: Counter[str], flags: dict[str, Any]) -> None:  # noqa: C901, PLR0915 - one route per scenario
    def count(name: str) -> int:
        calls[name] += 1
        return calls[name]

    @app.get("/items", response_model=ItemPage)
    @cached(ttl=60)
    async def items(offset: int = 0, limit: int = 10) -> dict[str, Any]:
        rows = [
            {"id": i, "name": f"item {i}", "secret": "hidden"}
            for i in range(offset, offset + limit)
        ]
        return {"calls": count("items"), "items": rows}

    @app.get("/items/{item_id}")
    @cached(ttl=60)
    async def item(item_id: int) -> dict[str, Any]:
        return {"calls": count("item"), "item": {"id": item_id, "version": flags.get("version", 1)}}

    @app.post("/items")
    async def create() -> dict[str, Any]:
        return {"calls": count("create")}

    @app.get("/status/{code}")
    @cached(ttl=60)
    async def status(code: int) -> JSONResponse:
        return JSONResponse({"calls": count("status")}, status_code=code)

    @app.get("/boom")
    @cached(ttl=60)
    async def boom() -> dict[str, Any]:
        count("boom")
        msg = "the handler failed"
        raise RuntimeError(msg)

    @app.get("/cookie")
    @cached(ttl=60)
    async def cookie(response: Response) -> dict[str, Any]:
        response.set_cookie("session", f"user-{calls['cookie'] + 1}")
        return {"calls": count("cookie")}

    @app.get("/directive/{value}")
    @cached(ttl=60)
    async def directive(value: str, response: Response) -> dict[str, Any]:
        response.headers["cache-control"] = value
        return {"calls": count("directive")}

    @app.get("/stream")
    @cached(ttl=60)
    async def stream() -> StreamingResponse:
        count("stream")

        async def chunks() -> AsyncIterator[bytes]:
            for index in range(3):
                yield f"chunk {index}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/big")
    @cached(ttl=60, max_body_size=1024)
    async def big() -> Response:
        count("big")
        return Response(b"x" * 2048, media_type="application/octet-stream")

    @app.get("/shared")
    @cached(ttl=60)
    async def shared() -> dict[str, Any]:
        return {"calls": count("shared")}

    @app.get("/per-user")
    @cached(ttl=60, vary_on=("authorization",))
    async def per_user(authorization: Annotated[str, Header()] = "") -> dict[str, Any]:
        return {"calls": count("per-user"), "auth": authorization}

    @app.get("/per-user/lang")
    @cached(ttl=60, vary_on=("authorization", "accept-language"))
    async def per_user_lang(accept_language: Annotated[str, Header()] = "") -> dict[str, Any]:
        return {"calls": count("per-user-lang"), "lang": accept_language}

    @app.get("/by-user/{item_id}")
    @cached(ttl=60, vary_on=("authorization",))
    async def by_user(item_id: int, authorization: Annotated[str, Header()] = "") -> dict[str, Any]:
        return {"calls": count("by-user"), "auth": authorization, "item": item_id}

    @app.get("/lang")
    @cached(ttl=60, vary_on=("accept-language",))
    async def lang(accept_language: Annotated[str, Header()] = "") -> dict[str, Any]:
        return {"calls": count("lang"), "lang": accept_language}

    @app.get("/deps")
    @cached(ttl=60)
    async def deps(session: Annotated[Session, Depends(Session)]) -> dict[str, Any]:
        return {"calls": count("deps"), "session": type(session).__name__}

    @app.get("/slow")
    @cached(ttl=60)
    async def slow() -> dict[str, Any]:
        await asyncio.sleep(0.2)
        return {"calls": count("slow")}

    @app.get("/stale")
    @cached(ttl=1, stale_ttl=30)
    async def stale() -> dict[str, Any]:
        number = count("stale")
        await asyncio.sleep(1.0)
        return {"calls": number}

    @app.get("/flaky")
    @cached(ttl=1, stale_if_error=1)
    async def flaky() -> dict[str, Any]:
        number = count("flaky")
        if flags.get("fail"):
            msg = "upstream down"
            raise RuntimeError(msg)
        return {"calls": number}

    @app.get("/tagged/{item_id}")
    @cached(ttl=60, tags=item_tags)
    async def tagged(item_id: int) -> dict[str, Any]:
        return {"calls": count("tagged"), "id": item_id}

    @app.get("/public")
    @cached(ttl=60, cache_control="public, max-age=3600, s-maxage=600")
    async def public() -> dict[str, Any]:
        return {"calls": count("public")}

    @app.get("/ignore")
    @cached(ttl=60, no_cache="ignore")
    async def ignore() -> dict[str, Any]:
        return {"calls": count("ignore")}

    @app.get("/refresh")
    @cached(ttl=60, min_refresh_interval=0.5)
    async def refresh() -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return {"calls": count("refresh")}

    @app.get("/refresh/now")
    @cached(ttl=60, min_refresh_interval=0)
    async def refresh_now() -> dict[str, Any]:
        return {"calls": count("refresh-now")}

    @app.get("/header")
    @cached(ttl=60)
    async def header(request: Request, response: Response) -> dict[str, Any]:
        response.headers["x-custom"] = "yes"
        return {"calls": count("header"), "path": request.url.path}

    @app.get("/constant")
    @cached(ttl=60)
    async def constant() -> dict[str, Any]:
        count("constant")
        return {"constant": True}

    @app.get("/fragile")
    @cached(ttl=60)
    async def fragile(request: Request) -> JSONResponse:
        number = count("fragile")
        too_long = any(len(value) > 1000 for value in request.headers.values())
        return JSONResponse({"calls": number}, status_code=400 if too_long else 200)

    @app.get("/background")
    @cached(ttl=60)
    async def background(tasks: BackgroundTasks, fail: bool = False) -> dict[str, Any]:  # noqa: FBT001, FBT002 - a query flag
        tasks.add_task(slow_task, fail=fail)
        return {"calls": count("background")}

    @app.get("/stream/slow")
    @cached(ttl=60)
    async def slow_stream() -> StreamingResponse:
        count("slow-stream")
        return StreamingResponse(slow_chunks(), media_type="text/plain")

    @app.get("/negotiated")
    @cached(ttl=60)
    async def negotiated(request: Request) -> JSONResponse:
        text = GREETINGS.get(request.headers.get("accept-language", ""), "hello")
        count("negotiated")
        return JSONResponse({"text": text}, headers={"vary": "Accept-Language"})

    @app.get("/negotiated/any")
    @cached(ttl=60)
    async def negotiated_any() -> JSONResponse:
        return JSONResponse({"calls": count("vary-star")}, headers={"vary": "*"})

    @app.get("/dated")
    @cached(ttl=60)
    async def dated() -> JSONResponse:
        return JSONResponse({"calls": count("dated")}, headers=DATED_HEADERS)

    @app.get("/sorted")
    @cached(ttl=60, sort_query=True)
    async def sorted_query(offset: int = 0, limit: int = 10) -> dict[str, Any]:
        return {"calls": count("sorted"), "offset": offset, "limit": limit}

    @app.get("/guarded/route", dependencies=[Depends(require_user)])
    @cached(ttl=60, public=True)
    async def guarded_route() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @app.get("/guarded/param")
    @cached(ttl=60, public=True)
    async def guarded_param(user: Annotated[str, Depends(require_user)]) -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential", "user": user}

    @app.get("/guarded/api-key")
    @cached(ttl=60, public=True)
    async def guarded_api_key(key: Annotated[str, Depends(require_api_key)]) -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential", "key": len(key)}

    @app.get("/guarded/decorated")
    @staff_only
    @cached(ttl=60, public=True)
    async def guarded_decorated() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @app.get("/guarded/sync", dependencies=[Depends(require_user)])
    @cached(ttl=60, public=True)
    def guarded_sync() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @app.get("/members/report")
    @cached(ttl=60, public=True)
    async def members_report() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    @app.get("/guarded/flaky", dependencies=[Depends(require_user_or_503)])
    @cached(ttl=1, stale_if_error=60, public=True)
    async def guarded_flaky() -> dict[str, Any]:
        return {"calls": count("flaky-check"), "figures": "confidential"}

    checked = APIRouter(dependencies=[Depends(require_user)])

    @checked.get("/guarded/router")
    @cached(ttl=60, public=True)
    async def guarded_router() -> dict[str, Any]:
        return {"calls": count("guarded"), "figures": "confidential"}

    app.include_router(checked)

    @app.get("/me")
    @cached(ttl=60)
    async def me(session: Annotated[str | None, Cookie()] = None) -> dict[str, Any]:
        return {"calls": count("me"), **PROFILES[session]}

    @app.get("/me/keyed")
    @cached(ttl=60, vary_on_cookies=("session",))
    async def me_keyed(session: Annotated[str | None, Cookie()] = None) -> dict[str, Any]:
        return {"calls": count("me"), **PROFILES[session]}

    @app.get("/profile/by-key")
    @cached(ttl=60, vary_on=("x-api-key",))
    async def profile_by_key(key: Annotated[str | None, Security(API_KEY)]) -> dict[str, Any]:
        return {"calls": count("by-key"), "key": key}

    @app.get("/reset", name="reset")
    async def reset() -> dict[str, str]:
        return {"reset": "form"}

    @app.get("/link")
    @cached(ttl=60)
    async def link(request: Request) -> HTMLResponse:
        count("link")
        return HTMLResponse(f'<form action="{request.url_for("reset")}" method="post"></form>')

    @app.get("/grouped/one")
    @cached(ttl=60, namespace="grouped")
    async def grouped_one() -> dict[str, Any]:
        return {"calls": count("grouped"), "route": "one"}

    @app.get("/grouped/two")
    @cached(ttl=60, namespace="grouped")
    async def grouped_two() -> dict[str, Any]:
        return {"calls": count("grouped"), "route": "two"}


def build_mounted(cache: Cache, calls: Counter[str]) -> FastAPI:
    """Two apps sharing `cache`, mounted at `/a` and `/b`, each with `GET /items`.

    The one at `/b` checks every request at app level (`FastAPI(dependencies=...)`).
    """
    parent = FastAPI()
    for name, dependencies in (("a", []), ("b", [Depends(require_user)])):
        child = FastAPI(dependencies=dependencies)
        setup_cache(child, cache)
        child.get("/items")(cached(ttl=60, public=True)(_counted(name, calls)))
        parent.mount(f"/{name}", child)
    return parent


def _counted(name: str, calls: Counter[str]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def items() -> dict[str, Any]:
        calls[name] += 1
        return {"app": name, "calls": calls[name]}

    return items


def build_compressed(cache: Cache, calls: Counter[str]) -> FastAPI:
    """`GET /text` (2,000 bytes) and `GET /small` (10 bytes) behind gzip and CORS."""
    app = FastAPI()
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(CORSMiddleware, allow_origins=["https://a.example", "https://b.example"])
    setup_cache(app, cache)

    @app.get("/text")
    @cached(ttl=60)
    async def text() -> PlainTextResponse:
        calls["text"] += 1
        return PlainTextResponse("x" * 2000)

    @app.get("/small")
    @cached(ttl=60)
    async def small() -> PlainTextResponse:
        calls["small"] += 1
        return PlainTextResponse("y" * 10)

    return app
