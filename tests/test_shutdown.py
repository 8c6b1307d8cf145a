"""Shutdown returns: closing a cache, or stopping a FastAPI or Litestar app, never hangs.

Each case runs in a child process of its own (a hang there cannot hang the suite), all
of them at once; a child that has not printed `closed` within `DEADLINE` seconds fails
its case and is killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from support.processes import stop

if TYPE_CHECKING:
    from collections.abc import Iterator

DEADLINE = 30.0  # seconds for every child together: one does its work in about 2 s

CORE = """
    cache = Cache.from_url(URL, namespace=NAMESPACE, **OPTIONS)
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    await cache.delete("k")  # its announcement comes back as the listener is stopped
    await cache.close()
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()], (
        asyncio.all_tasks()
    )
"""

FASTAPI = """
    from fastapi import FastAPI
    from atomcache_fastapi import cached, setup_cache

    app = FastAPI()

    @app.get("/items")
    @cached(ttl=60, refresh_ahead=True)
    async def items() -> list[int]:
        return [1, 2]

    cache = Cache.from_url(URL, namespace=NAMESPACE, **OPTIONS)
    setup_cache(app, cache)
    await run_lifespan(app, cache)
"""

LITESTAR = """
    from litestar import Litestar, get
    from atomcache_litestar import AtomCachePlugin, cached

    @get("/items")
    @cached(ttl=60, refresh_ahead=True)
    async def items() -> list[int]:
        return [1, 2]

    cache = Cache.from_url(URL, namespace=NAMESPACE, **OPTIONS)
    app = Litestar([items], plugins=[AtomCachePlugin(cache)])
    await run_lifespan(app, cache)
"""

PRELUDE = """
import asyncio, json, sys
import httpx
from atomcache_core import Cache

URL, NAMESPACE, OPTIONS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

async def run_lifespan(app, cache) -> None:
    '''Start the app, serve requests (hits of the local tier among them), stop it.'''
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    running = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(3):
            assert (await client.get("/items")).json() == [1, 2]
    await cache.delete("k")  # its announcement comes back as the app stops
    assert len(cache.refresher) == 1  # the route is kept warm
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await running
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not left, left  # the refresh-ahead loop among them

async def main() -> None:
BODY

asyncio.run(main())
sys.stdout.write("closed\\n")  # one write: log lines from other threads share the pipe
sys.stdout.flush()
"""

SCENARIOS = {"core": CORE, "fastapi": FASTAPI, "litestar": LITESTAR}
BACKENDS = {
    "memory": ("memory://", {}),
    "redis": ("", {}),
    "redis + local tier": ("", {"local_ttl": 5}),
}


@pytest.fixture(scope="module")
def shutdowns(redis_url: str) -> Iterator[dict[tuple[str, str], tuple[int | None, str]]]:
    """Run every (scenario, backend) child at once; their exit status and output."""
    children: dict[tuple[str, str], subprocess.Popen[str]] = {}
    for scenario, body in SCENARIOS.items():
        script = PRELUDE.replace("BODY", textwrap.indent(textwrap.dedent(body), "    "))
        for backend, (url, options) in BACKENDS.items():
            namespace = f"shutdown-{scenario}-{backend.replace(' ', '')}"
            arguments = [url or redis_url, namespace, json.dumps(options)]
            children[scenario, backend] = subprocess.Popen(
                [sys.executable, "-c", script, *arguments],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
    deadline = time.monotonic() + DEADLINE
    results: dict[tuple[str, str], tuple[int | None, str]] = {}
    try:
        for case, child in children.items():
            try:
                output, _ = child.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(child, timeout=1.0)
                output = "(still running: killed)"
            results[case] = (child.returncode, output)
        yield results
    finally:
        for child in children.values():
            stop(child, timeout=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_shutdown_returns(
    shutdowns: dict[tuple[str, str], tuple[int | None, str]], scenario: str, backend: str
) -> None:
    """The cache closes (and the app stops) promptly, leaving no task behind.

    The apps' route is kept warm (`refresh_ahead`): stopping the app stops its loop.
    """
    status, output = shutdowns[scenario, backend]
    assert status == 0, output
    assert "closed" in output.splitlines(), output
