"""Serve the example FastAPI and Litestar apps and show what their cache does.

Each app is served by uvicorn on a free loopback port; a client sends a cold request,
a repeat, a revalidation with the ETag, and a `Cache-Control: no-cache` reload.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))

import fastapi_example
import litestar_example

# Litestar turns INFO lines on; this demo prints its own account of each request.
for logger_name in ("httpx", "fastapi_example", "litestar_example"):
    logging.getLogger(logger_name).setLevel(logging.WARNING)


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def show(name: str, app: Any) -> None:
    """Serve `app`, send the four requests and print what came back."""
    server = uvicorn.Server(uvicorn.Config(app, port=free_port(), log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to await
        await asyncio.sleep(0.01)
    print(f"\n{name}: GET /products?limit=2 (the handler takes 200 ms)")
    base = f"http://127.0.0.1:{server.config.port}"
    async with httpx.AsyncClient(base_url=base) as client:
        etag = ""
        for label, headers in (
            ("cold", {}),
            ("repeat", {}),
            ("revalidate", {"if-none-match": "<etag>"}),
            ("no-cache", {"cache-control": "no-cache"}),
        ):
            if label == "no-cache":
                await asyncio.sleep(1.0)  # past min_refresh_interval
            sent = {key: value.replace("<etag>", etag) for key, value in headers.items()}
            started = time.perf_counter()
            response = await client.get("/products", params={"limit": 2}, headers=sent)
            elapsed = (time.perf_counter() - started) * 1000
            etag = response.headers.get("etag", etag)
            print(
                f"  {label:<10} {response.status_code} in {elapsed:6.1f} ms  "
                f"Cache-Status: {response.headers['cache-status']}"
            )
        print(f"  ETag {etag}, body {response.text[:60]}...")
    server.should_exit = True
    await task


async def main() -> None:
    """Both frameworks, one after the other."""
    await show("FastAPI", fastapi_example.app)
    await show("Litestar", litestar_example.app)


if __name__ == "__main__":
    asyncio.run(main())
