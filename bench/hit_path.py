"""In-process cost of a cached hit: the adapter's own work, where it goes, and its memory.

No sockets: each app is called directly as an ASGI callable with the scope a server
would give a `GET /items` (a `Host` and a user agent), and its messages go to a list.
Variants:

- `bare ASGI`: a callable that sends the ~8 KB body of bench/http.py as constant bytes,
  the physical floor of any answer;
- `fastapi floor`, `litestar floor`: the framework with a pure ASGI middleware where the
  adapter's sits (FastAPI's `add_middleware`, Litestar's app-level `middleware`) that
  sends the same constant bytes: what the framework costs before any middleware's own
  work (FastAPI's telemetry check and error middleware, Litestar's routing and state);
- `fastapi hit`, `litestar hit`: the same route as bench/http.py's
  `atomcache hit (memory)` variants (FastAPI through `setup_cache`, Litestar through
  `AtomCachePlugin`), warmed up, so every call is a hit;
- `fastapi 304`, `litestar 304`: those routes asked with `If-None-Match`;
- `fastapi hit, no metrics`: the FastAPI hit with no observer (`cache.observer` is
  `None`, as when neither `opentelemetry-api` nor `prometheus-client` is installed),
  where the other variants report to both (atomcache_core.observability): the
  difference is what metrics cost a hit.

Each round times `--calls` sequential calls of every variant in turn (uvloop's event
loop, as the HTTP benchmark's servers use); the figure is the median over `--rounds`
rounds, in microseconds per call. `over bare` is a variant's median minus the bare
callable's; `adapter` is a hit's median minus its framework's floor: the adapter's own
work from the ASGI call to the last `send` (issue 16's goal: at most 10 us). Then one
profile (cProfile, sorted by time spent in each function itself) of `--calls` hits of
each framework shows what the remaining cost is made of.

Memory: the FastAPI route on Redis with the local tier (bench/http.py's `local` app, a
throwaway `redis-server`) is asked for `--entries` distinct URLs (`/items?n=...`), each
twice (the second read keeps the entry in the local tier), then as many more; the
growth of the memory Python holds (tracemalloc) between the two fills, over the entries
added, is the memory per local-tier entry, and beyond the body the tier's own overhead
(goal: at most 1 KB). The bounded memos of recent reads (decoded entries, at most
8 MiB; header blocks, at most 512) are emptied before each measurement, so that
neither holds part of one fill and not of the other: their bound is per process, not
per entry.

The figures go to bench/results/hit_path.json.

    python bench/hit_path.py [--rounds 7] [--calls 5000] [--profile 20] [--entries 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import io
import json
import pstats
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

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
RedisServer = _HTTP.RedisServer
RESULTS = Path(__file__).with_name("results")
ADAPTER_GOAL_US = 10.0
ENTRY_GOAL_BYTES = 1024

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


class ConstantAnswer:
    """A pure ASGI middleware answering every HTTP request with the constant bytes."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app` (called for lifespan events only)."""
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The bare callable's answer, from where the adapter's middleware sits."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await bare_asgi(scope, receive, send)


def fastapi_floor() -> ASGIApp:
    """FastAPI with `ConstantAnswer` added as the adapter adds its middleware."""
    from fastapi import FastAPI  # noqa: PLC0415 - only this variant needs it

    app = FastAPI()
    app.add_middleware(ConstantAnswer)
    return app


def litestar_floor() -> ASGIApp:
    """Litestar with `ConstantAnswer` as app-level middleware, as the plugin installs its own."""
    from litestar import Litestar, get  # noqa: PLC0415 - only this variant needs it

    @get("/items")
    async def items() -> str:  # never reached: the middleware answers
        return ""

    app = Litestar([items], middleware=[ConstantAnswer])  # type: ignore[list-item]
    return cast("ASGIApp", app)


def scope_of(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
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
        "query_string": query,
        "headers": headers,
        "state": {},
    }


async def call(
    app: ASGIApp, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> list[Message]:
    """One request through `app`; the messages it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope_of(headers, query), receive, send)
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
    for name, build, floor in (
        ("fastapi", build_fastapi_app, fastapi_floor),
        ("litestar", build_litestar_app, litestar_floor),
    ):
        found[f"{name} floor"] = (floor(), HEADERS, 200)
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
    unobserved = build_fastapi_app("memory", "", "hit-path")
    unobserved.state.atomcache.observer = None  # what neither library installed gives
    lifespan = Lifespan(unobserved)
    await lifespan.start()
    lifespans.append(lifespan)
    await call(unobserved, HEADERS)
    found["fastapi hit, no metrics"] = (unobserved, HEADERS, 200)
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


def forget_recent_reads(app: Any) -> None:
    """Empty the bounded memos of recent reads of a FastAPI bench app's cache and adapter."""
    flight = app.state.atomcache.single_flight
    flight.reads.forget_decoded()  # a measurement that must leave the memo out
    layer = app.middleware_stack
    while not hasattr(layer, "http_cache"):
        layer = layer.app
    layer.http_cache._blocks.clear()  # noqa: SLF001


async def memory_per_entry(entries: int) -> dict[str, float]:
    """Bytes held per local-tier entry, and beyond the body (see the header)."""
    with RedisServer() as server:
        app: ASGIApp = build_fastapi_app("local", server.url, f"hit-path-{uuid.uuid4().hex[:8]}")
        lifespan = Lifespan(app)
        await lifespan.start()

        async def fill(first: int, count: int) -> None:
            for number in range(first, first + count):
                query = b"n=%d" % number
                await call(app, HEADERS, query)  # computed, stored on Redis
                await call(app, HEADERS, query)  # read from Redis: kept in the local tier
            answer = await call(app, HEADERS, b"n=%d" % first)
            fields = dict(answer[0]["headers"])
            if not fields[b"cache-status"].startswith(b"atomcache; hit"):
                msg = f"the local tier does not answer a filled URL: {fields}"
                raise RuntimeError(msg)

        def held() -> int:
            forget_recent_reads(app)
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        await fill(0, 50)  # warm-up: imports, connections, first allocations
        tracemalloc.start()
        try:
            await fill(50, entries)
            after_first = held()
            await fill(50 + entries, entries)
            after_second = held()
        finally:
            tracemalloc.stop()
        await lifespan.stop()
    per_entry = (after_second - after_first) / entries
    return {
        "entries": entries,
        "body_bytes": len(BODY),
        "bytes_per_entry": per_entry,
        "beyond_body_bytes": per_entry - len(BODY),
    }


def main() -> None:
    """Measure, print the table, the memory per entry and the profile; write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5000, help="sequential calls per round")
    parser.add_argument("--profile", type=int, default=20, help="profile lines per framework")
    parser.add_argument("--entries", type=int, default=2000, help="local-tier entries per fill")
    arguments = parser.parse_args()
    medians = uvloop.run(measure(arguments.rounds, arguments.calls))
    bare = medians["bare ASGI"]
    print(f"hit path, in process: median of {arguments.rounds} rounds of {arguments.calls} calls")
    print(f"{'variant':<15} {'us/call':>8} {'over bare':>10} {'adapter':>8} {'goal':>8}")
    rows = []
    for name, median in medians.items():
        framework = name.split()[0]
        adapter = None
        if name.endswith(("hit", "304", "no metrics")):
            adapter = median - medians[f"{framework} floor"]
        goal = "" if adapter is None else ("met" if adapter <= ADAPTER_GOAL_US else "not met")
        shown = "" if adapter is None else f"{adapter:.1f}"
        print(f"{name:<15} {median:>8.1f} {median - bare:>10.1f} {shown:>8} {goal:>8}")
        rows.append(
            {
                "variant": name,
                "us_per_call": median,
                "over_bare_us": median - bare,
                "adapter_us": adapter,
                "goal_us": ADAPTER_GOAL_US if adapter is not None else None,
                "met": None if adapter is None else adapter <= ADAPTER_GOAL_US,
            }
        )
    memory = uvloop.run(memory_per_entry(arguments.entries))
    memory["goal_bytes"] = ENTRY_GOAL_BYTES
    memory["met"] = memory["beyond_body_bytes"] <= ENTRY_GOAL_BYTES
    print(
        f"local tier: {memory['bytes_per_entry']:,.0f} bytes per entry of a "
        f"{len(BODY):,}-byte body, {memory['beyond_body_bytes']:,.0f} beyond it "
        f"(goal <= {ENTRY_GOAL_BYTES:,}: {'met' if memory['met'] else 'not met'})"
    )
    settings = {"rounds": arguments.rounds, "calls": arguments.calls}
    RESULTS.mkdir(exist_ok=True)
    results = {"hit_path": rows, "memory": memory, **settings}
    (RESULTS / "hit_path.json").write_text(json.dumps(results, indent=2) + "\n")
    if arguments.profile:
        print(uvloop.run(profile(arguments.calls, arguments.profile)))


if __name__ == "__main__":
    main()
