"""The Litestar app of the shared HTTP scenarios (routes listed in http_scenarios.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.dto import DataclassDTO, DTOConfig
from litestar.params import FromPath, FromQuery, HeaderParameter
from litestar.response import Stream

from atomcache_litestar import AtomCachePlugin, cached

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import AsyncIterator, Iterable

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


def build_app(  # noqa: C901 - one route per scenario
    cache: Cache, calls: Counter[str], flags: dict[str, Any]
) -> tuple[Litestar, AtomCachePlugin]:
    """The scenario routes on Litestar, counting handler calls in `calls`."""

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

    handlers = [
        items, item, create, status, boom, cookie, directive, stream, big, shared, per_user,
        lang, deps, slow, stale, flaky, tagged, public, ignore, refresh, header, constant,
        fragile,
    ]  # fmt: skip
    plugin = AtomCachePlugin(cache)
    return Litestar(handlers, plugins=[plugin]), plugin
