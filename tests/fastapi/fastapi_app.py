"""The FastAPI app of the shared HTTP scenarios (routes listed in http_scenarios.py)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from atomcache_fastapi import cached, setup_cache

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import AsyncIterator, Iterable

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


def build_app(cache: Cache, calls: Counter[str], flags: dict[str, Any]) -> FastAPI:  # noqa: C901 - one route per scenario
    """The scenario routes on FastAPI, counting handler calls in `calls`."""
    app = FastAPI()
    setup_cache(app, cache)

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

    return app
