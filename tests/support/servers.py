"""Real HTTP servers for the adapter tests: uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from support.redis_server import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def in_process(app: Any) -> httpx.AsyncClient:
    """A client calling the ASGI `app` in this process, without a server (no lifespan)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, *, root_path: str = "") -> AsyncIterator[str]:
    """Run `app` with uvicorn in this event loop; yield its base URL; stop it after.

    `root_path`: the prefix a proxy in front strips (uvicorn's `--root-path`).
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        lifespan="on",
        root_path=root_path,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):  # uvicorn sets `started` and offers no event to await
            if server.started or task.done():
                break
            await asyncio.sleep(0.005)
        if task.done():
            task.result()
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def uvicorn_processes(
    target: str, count: int, *, env: dict[str, str], pythonpath: list[str]
) -> AsyncIterator[list[str]]:
    """Start `count` uvicorn server processes of `target` ("module:app") in parallel.

    Yields their base URLs once each has logged that its startup is complete; kills
    every one by PID on exit.
    """
    ports = [free_port() for _ in range(count)]
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(pythonpath)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "info", "--no-access-log",
            stderr=asyncio.subprocess.PIPE, env=environment,
        )
        for port in ports
    ]  # fmt: skip
    drains: list[asyncio.Task[None]] = []
    try:
        for process in processes:
            assert process.stderr is not None
            log: list[bytes] = []
            while b"Application startup complete" not in (
                line := await asyncio.wait_for(process.stderr.readline(), 60)
            ):
                log.append(line)
                assert line, b"".join(log).decode(errors="replace")
            drains.append(asyncio.create_task(_drain(process.stderr)))
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        for drain in drains:
            drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading a child's log so it never blocks on a full pipe."""
    while await stream.readline():
        pass
