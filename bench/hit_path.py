"""In-process cost of a cached hit: the adapter's own work, and where it goes.

No sockets: each app is called directly as an ASGI callable with the scope a server
would give a `GET /items` (a `Host` and a user agent), and its messages go to a list.
Variants:

- `bare ASGI`: a callable that sends the ~8 KB body of bench/http.py as constant bytes,
  the physical floor of any answer;
- `fastapi hit`, `litestar hit`: the same route as bench/http.py's
  `atomcache hit (memory)` variants (FastAPI through `setup_cache`, Litestar through
  `AtomCachePlugin`), warmed up, so every call is a hit;
- `fastapi 304`, `litestar 304`: those routes asked with `If-None-Match`.

Each round times `--calls` sequential calls of every variant in turn (uvloop's event
loop, as the HTTP benchmark's servers use); the figure is the median over `--rounds`
rounds, in microseconds per call, and "own work" is a variant's median minus the bare
callable's (issue 16's goal: at most 10 us). Then one profile (cProfile, sorted by
time spent in each function itself) of `--calls` hits of each framework shows what the
remaining cost is made of.

    python bench/hit_path.py [--rounds 7] [--calls 5000] [--profile 20]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import io
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop


def _http_bench() -> Any:
    """bench/http.py, imported under another name (it would shadow the `http` package)."""
    spec = importlib.util.spec_from_file_location("bench_http", Path(__file__).with_name("http.py"))
    if spec is None or spec.loader is None:
        msg = "bench/http.py is missing"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_http"] = module
    spec.loader.exec_module(module)
    return module


_HTTP = _http_bench()
BODY: bytes = _HTTP.BODY
build_fastapi_app = _HTTP.build_fastapi_app
build_litestar_app = _HTTP.build_litestar_app

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Message = dict[str, Any]
    ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
BARE_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def bare_asgi(_scope: dict[str, Any], _receive: Any, send: Any) -> None:
    """The floor: the body as constant bytes."""
    await send({"type": "http.response.start", "status": 200, "headers": BARE_HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def scope_of(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The scope uvicorn gives a `GET /items` with `headers`."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/items",
        "raw_path": b"/items",
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def call(app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    """One request through `app`; the messages it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope_of(headers), receive, send)
    return sent


class Lifespan:
    """An app's lifespan, started (its routes planned) and stopped (its cache closed)."""

    def __init__(self, app: ASGIApp) -> None:
        """Not started yet."""
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Future[None] | None = None

    async def send(self, event: str) -> None:
        """Send `lifespan.<event>`; wait for its `.complete`."""
        await self.inbox.put({"type": f"lifespan.{event}"})
        message = await self.outbox.get()
        if message["type"] != f"lifespan.{event}.complete":
            msg = f"the app did not complete its {event}: {message}"
            raise RuntimeError(msg)

    async def start(self) -> None:
        """Start the app."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.inbox.get, self.outbox.put))
        await self.send("startup")

    async def stop(self) -> None:
        """Stop the app."""
        await self.send("shutdown")
        if self.task is not None:
            await self.task


Variants = dict[str, tuple["ASGIApp", list[tuple[bytes, bytes]], int]]


async def variants(lifespans: list[Lifespan]) -> Variants:
    """Each variant: the app, the request's fields, the status every answer must have.

    The apps are started (their lifespans added to `lifespans`) and warmed up.
    """
    found: Variants = {"bare ASGI": (bare_asgi, HEADERS, 200)}
    for name, build in (("fastapi", build_fastapi_app), ("litestar", build_litestar_app)):
        app: ASGIApp = build("memory", "", "hit-path")
        lifespan = Lifespan(app)
        await lifespan.start()
        lifespans.append(lifespan)
        await call(app, HEADERS)
        fields = dict((await call(app, HEADERS))[0]["headers"])
        if not fields[b"cache-status"].startswith(b"atomcache; hit"):
            msg = f"{name}: the second request is not a hit: {fields}"
            raise RuntimeError(msg)
        found[f"{name} hit"] = (app, HEADERS, 200)
        found[f"{name} 304"] = (app, [*HEADERS, (b"if-none-match", fields[b"etag"])], 304)
    return found


async def measure(rounds: int, calls: int) -> dict[str, float]:
    """The median microseconds per call of each variant."""
    lifespans: list[Lifespan] = []
    apps = await variants(lifespans)
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, (app, headers, status) in apps.items():
            answer = await call(app, headers)
            if answer[0]["status"] != status:
                msg = f"{name}: {answer[0]['status']} instead of {status}"
                raise RuntimeError(msg)
            begun = time.perf_counter()
            for _ in range(calls):
                await call(app, headers)
            samples[name].append((time.perf_counter() - begun) / calls * 1e6)
    for lifespan in lifespans:
        await lifespan.stop()
    return {name: statistics.median(values) for name, values in samples.items()}


async def profile(calls: int, lines: int) -> str:
    """CProfile of `calls` hits per framework, the top `lines` functions by own time."""
    lifespans: list[Lifespan] = []
    apps = await variants(lifespans)
    report = io.StringIO()
    for name in ("fastapi hit", "litestar hit"):
        app, headers, _ = apps[name]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            await call(app, headers)
        profiler.disable()
        report.write(f"\n{name}: {calls} calls, by time spent in each function itself\n")
        stats = pstats.Stats(profiler, stream=report).strip_dirs().sort_stats("tottime")
        stats.print_stats(lines)
    for lifespan in lifespans:
        await lifespan.stop()
    return report.getvalue()


def main() -> None:
    """Measure, print the table and the profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5000, help="sequential calls per round")
    parser.add_argument("--profile", type=int, default=20, help="profile lines per framework")
    arguments = parser.parse_args()
    medians = uvloop.run(measure(arguments.rounds, arguments.calls))
    floor = medians["bare ASGI"]
    print(f"hit path, in process: median of {arguments.rounds} rounds of {arguments.calls} calls")
    print(f"{'variant':<14} {'us/call':>8} {'own work us':>12} {'goal':>10}")
    for name, median in medians.items():
        own = median - floor
        goal = "" if name == "bare ASGI" else ("met" if own <= 10 else "not met")  # noqa: PLR2004
        print(f"{name:<14} {median:>8.1f} {own:>12.1f} {goal:>10}")
    if arguments.profile:
        print(uvloop.run(profile(arguments.calls, arguments.profile)))


if __name__ == "__main__":
    main()
