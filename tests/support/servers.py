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
    import socket
    from collections.abc import AsyncIterator


def in_process(app: Any) -> httpx.AsyncClient:
    """A client calling the ASGI `app` in this process, without a server (no lifespan)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    """Run `app`'s ASGI lifespan in this event loop, as a server does around its requests.

    Yields the app's answer to `lifespan.startup`: `lifespan.startup.complete`, or
    `lifespan.startup.failed` and its `message`. On exit an app that started is shut
    down; one whose startup failed may have raised too (Starlette and Litestar do).
    """
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    running = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    answer = await outbox.get()
    started = answer["type"] == "lifespan.startup.complete"
    try:
        yield answer
    finally:
        if started:
            await inbox.put({"type": "lifespan.shutdown"})
            assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
            await running
        else:
            with contextlib.suppress(Exception):
                await running


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
    server = _Server(config)
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
        server.stopping.set()
        await task


class _Server(uvicorn.Server):
    """uvicorn's server, stopped as soon as it can be rather than after fixed pauses.

    uvicorn notices the exit flag at its next tick (0.1 s) and pauses 0.1 s after asking
    its connections to close; a suite that starts and stops a server per test (about
    650 of them) would wait a minute for nothing. Here the tick is cut short and the
    pause lasts until the connections are gone (the tests' clients closed theirs first).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stopping = asyncio.Event()

    async def main_loop(self) -> None:
        """Tick as uvicorn does (0.1 s: `Date`, the exit flag), cut short by `stopping`."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """As uvicorn shuts down (`Server.shutdown`), its pause ended once no connection is left."""
        waiting = getattr(self, "_wait_tasks_to_complete", None)
        if waiting is None:  # another uvicorn: its own shutdown, pauses included
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        for _ in range(20):  # as long as uvicorn's pause at most
            if not self.server_state.connections:
                break
            await asyncio.sleep(0.005)
        await asyncio.wait_for(waiting(), timeout=self.config.timeout_graceful_shutdown)
        if not self.force_exit:
            await self.lifespan.shutdown()


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
