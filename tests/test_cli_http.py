"""`atomcache inspect --http`: the HTTP responses stored for a URL, found without its key."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from click.testing import CliRunner

from atomcache_core import Cache
from atomcache_core.asgi import HttpCache, RouteOptions, RoutePlan
from atomcache_core.cli import main


def run(*arguments: str) -> tuple[int, str]:
    """The command's exit code and output (stdout alone with --json)."""
    result = CliRunner().invoke(main, list(arguments))
    return result.exit_code, result.stdout if "--json" in arguments else result.output


async def page(scope: Any, receive: Any, send: Any) -> None:
    """An endpoint answering a small JSON page."""
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


def serve(redis_url: str, namespace: str, requests: list[dict[str, Any]]) -> None:
    """Answer each request (scope fields) through the cache, as an adapter would."""

    async def ask_all() -> None:
        async with Cache.from_url(redis_url, namespace=namespace, observers=()) as cache:
            http_cache = HttpCache(cache)
            for fields in requests:
                host = fields.pop("host", "Shop.Example")
                scope = {
                    "type": "http",
                    "method": "GET",
                    "scheme": "https",
                    "path": "/items/1",
                    "root_path": "",
                    "query_string": b"",
                    "headers": [(b"host", host.encode())],
                    **fields,
                }
                route = RoutePlan(fields.pop("template", "/items/{item_id}"), RouteOptions(ttl=60))

                async def receive() -> dict[str, Any]:
                    return {"type": "http.request", "body": b"", "more_body": False}

                async def send(message: Any) -> None:
                    pass

                await http_cache.serve(
                    scope, receive, send, page, route=route, path_params={"item_id": "1"}
                )

    asyncio.run(ask_all())


def test_inspect_finds_the_responses_of_a_url(redis_url: str) -> None:
    """Every stored variant of the URL, with its route; another URL or host finds none."""
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    serve(
        redis_url,
        namespace,
        [
            {"query_string": b"api_key=s3cret&page=2"},
            {"query_string": b"api_key=s3cret&page=2", "headers": [
                (b"host", b"Shop.Example"), (b"x-forwarded-proto", b"http")
            ]},
            {"query_string": b"page=3"},
            {"path": "/items/1", "root_path": "/shop", "raw_path": b"/items/1"},  # hypercorn
            {"path": "/items/1", "raw_path": b"/shop/items/1"},  # a Litestar mount
        ],
    )  # fmt: skip
    target = "https://Shop.Example/items/1?api_key=s3cret&page=2"
    code, output = run("inspect", redis_url, "--http", target, "--namespace", namespace, "--json")
    assert code == 0, output
    found = json.loads(output)
    assert [entry["route"] for entry in found["entries"]] == ["/items/{item_id}"] * 2
    assert all(entry["entry"]["fresh"] for entry in found["entries"])
    assert "s3cret" not in "".join(entry["key"] for entry in found["entries"])
    mounted = "https://Shop.Example/shop/items/1"
    code, output = run("inspect", redis_url, "--http", mounted, "--namespace", namespace, "--json")
    assert code == 0, output
    assert len(json.loads(output)["entries"]) == 2
    code, output = run("inspect", redis_url, "--http", target, "--namespace", namespace)
    assert "2 entries stored for" in output
    assert "route:        /items/{item_id}" in output
    for other in (
        "https://shop.example/items/1?api_key=s3cret&page=2",
        "https://Shop.Example/items/2",
    ):
        code, output = run("inspect", redis_url, "--http", other, "--namespace", namespace)
        assert code == 1, output
        assert "0 entries stored" in output


def test_inspect_takes_a_key_or_a_url() -> None:
    """Neither, both, or a URL that is not absolute: a usage error (exit 2)."""
    assert run("inspect", "redis://127.0.0.1:1")[0] == 2
    assert run("inspect", "redis://127.0.0.1:1", "k", "--http", "https://a.example/")[0] == 2
    assert run("inspect", "redis://127.0.0.1:1", "--http", "/items/1")[0] == 2
