"""HTTP benchmark: requests/s of cached FastAPI and Litestar routes against a ceiling.

Each variant is an app with one GET route answering the same ~8 KB JSON list of 100
items (byte for byte), served by its own uvicorn worker process on a free loopback port.
FastAPI variants:

- `bare ASGI`: no framework, an ASGI callable sending the same bytes as constants: the
  physical ceiling of one uvicorn worker (measured in each framework's group, and every
  variant is also given as a ratio to it, `x bare ASGI`);
- `bare ASGI, a hit's fields`: the same callable sending the six fields an atomcache
  hit sends (`Vary`, `ETag`, `Cache-Control`, `Cache-Status` besides the two others), as
  constants: uvicorn checks and encodes every response field, so the difference between
  the two bare variants is what the fields themselves cost the server;
- `ceiling`: the route returns the body already encoded (`Response(content=...)`);
- `fastapi`: FastAPI validates and encodes the items through the response model;
- `atomcache hit (redis)` / `(memory)`: the same route under `@cached(ttl=3600)`,
  warmed up so every measured request is a hit;
- `atomcache hit (redis + local tier)`: the same on Redis with `local_ttl=60`, so hits
  are answered from the process's local tier;
- `atomcache hit (redis), gc.freeze()`: the Redis variant in a server that calls
  `gc.freeze()` once its app is built (the deployment note of docs/benchmarks.md: with
  requests in flight across each Redis round trip, Python's full garbage collections
  otherwise come often and scan every object of the process, the Redis hit's p99);
- `atomcache 304`: the memory-cached route, asked with `If-None-Match` for its ETag;
- `uncached, 1 dependency`: the `fastapi` route with one dependency
  (`dependencies=[Depends(...)]`, an `async def` that reads the `X-Bench` request field
  and answers 401 without it);
- `atomcache hit, 1 dependency (memory)`: that route under `@cached(ttl=3600)` in memory,
  warmed up. A route with a dependency is not answered before routing: FastAPI runs the
  dependency on every hit, then the stored response replaces what the endpoint returns.

Litestar variants:

- `litestar ceiling`: the handler returns the encoded body (`Response(content=...)`);
- `litestar`: the handler returns dataclasses, which Litestar encodes (msgspec);
- `litestar cache= (redis store)` / `(memory store)`: Litestar's own response cache,
  `@get(..., cache=3600)` with its `response_cache` store a `RedisStore` or a
  `MemoryStore`, warmed up (Litestar marks no hit: only status and body are checked);
- `atomcache hit (redis)` / `(redis), gc.freeze()` / `(memory)` / `(redis + local tier)`
  and `atomcache 304`: as for FastAPI, through `AtomCachePlugin`;
- `uncached, 1 guard` and `atomcache hit, 1 guard (memory)`: the same pair as FastAPI's
  dependency variants, with one guard on the handler (Litestar's closest match to a
  FastAPI dependency: an `async def` that reads `X-Bench` and raises
  `NotAuthorizedException` without it), which Litestar runs on every hit.

The routes with a dependency or guard are asked with `X-Bench: 1`. Before and after the
run, a request without it must be refused (401) although the entry is stored: the check
ran before the hit was sent.

The load comes from `wrk` if it is on PATH, else from bench/_load.py (raw asyncio
streams, keep-alive, in its own process), over C connections: a warm-up second, then the
measured duration. Every variant is measured once per round, in turn; the table gives
the median over the rounds (and their spread: a shared machine is noisy) of requests/s
and of the latencies' median and 99th percentile (wrk's `--latency`), the ratio to the
framework's ceiling and to the bare ASGI callable and, for the hits behind a dependency
or guard, the ratio to that route's own uncached path (`x uncached`: the hit's
requests/s over those of `uncached, 1 dependency` or `uncached, 1 guard`), which is what
the cache saves when the app's checks still run on every request. A response with an
unexpected status (or, for atomcache, without `Cache-Status: atomcache; hit`) fails the
run, as does a body other than the payload, checked before and after the run; the goals
are only reported, met or not, for each framework:

- atomcache hits in memory and with the local tier >= 0.6 x the bare ASGI callable;
- a hit on Redis >= 0.5 x the bare ASGI callable, with a p99 <= 2 x the local tier hit's;
- the 304 >= 1.0 x the 200 hit (memory);
- the hit behind a dependency or guard >= 3 x the same route uncached;
- Litestar: a hit on Redis >= 1.3 x Litestar's cache on its Redis store, in memory
  >= 1.0 x Litestar's cache on its memory store.

Redis is a throwaway `redis-server` unless ATOMCACHE_REDIS_URL is set. The rows go to
bench/results/http.json.

    python bench/http.py [--framework all|fastapi|litestar] [--duration 4]
        [--connections 50] [--rounds 3] [--client auto|python|wrk]

A server process alone, as the benchmark starts it (APP: ceiling, plain, redis, memory,
local, checked, checked-memory, and for Litestar store-redis, store-memory):

    python bench/http.py --serve APP --framework fastapi|litestar --port 8000
        [--redis-url redis://127.0.0.1:6379/0] [--namespace bench]
"""

# The imports come after the sys.path fix below: this file is named like the standard
# library's `http`.
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# `python bench/http.py` puts this folder first on sys.path, where this file would stand
# in for the standard library's `http` (imported by uvicorn, Starlette and http.client).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]
sys.path.insert(0, str(BENCH.parent / "tests"))

import argparse
import contextlib
import gc
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import litestar
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from litestar import Litestar, get
from litestar.config.response_cache import ResponseCacheConfig
from litestar.exceptions import NotAuthorizedException
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from pydantic import BaseModel

from atomcache_core import Cache
from atomcache_fastapi import cached, setup_cache  # the same `cached` as atomcache_litestar's
from atomcache_litestar import AtomCachePlugin
from support.redis_server import RedisServer, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler

RESULTS = BENCH / "results"
LOAD_GENERATOR = BENCH / "_load.py"
LOOPBACK = "127.0.0.1"
PATH = "/items"
WARMUP = 1.0
START_TIMEOUT = 30.0
HIT = "atomcache; hit"
TTL = 3600  # seconds a cached response lives: longer than any run, so none expires
STORE = "response_cache"  # the name of Litestar's response cache store

Framework = Literal["fastapi", "litestar"]
# What serves the route: `plain` is the framework encoding the items itself, `redis` and
# `memory` are atomcache on that backend, `store-*` Litestar's own cache on that store.
# `local` is atomcache on Redis with the local tier. `checked` is `plain` with one
# dependency (FastAPI) or guard (Litestar), `checked-memory` the same cached in memory.
AppKind = Literal[
    "asgi",
    "asgi-fields",
    "ceiling",
    "plain",
    "redis",
    "memory",
    "local",
    "store-redis",
    "store-memory",
    "checked",
    "checked-memory",
]
CHECKED_APPS = ("checked", "checked-memory")
LOCAL_TTL = 60.0
CHECK_FIELD = "x-bench"  # the request field the dependency or guard requires
CHECK_VALUE = "1"
REFUSED = 401  # the status of a checked route's answer without CHECK_FIELD


class Item(BaseModel):
    """One element of the payload, as the response model declares it."""

    id: int
    name: str
    price: float
    tags: list[str]
    in_stock: bool


ITEMS: list[dict[str, Any]] = [
    {
        "id": number,
        "name": f"item {number}",
        "price": 1.5 + number * 0.25,
        "tags": ["tools", "garden", "sale"][: 1 + number % 3],
        "in_stock": number % 3 != 0,
    }
    for number in range(100)
]
# What FastAPI and Litestar produce for ITEMS: compact JSON, fields in the order of the
# model or dataclass (checked on every variant's answer).
BODY = json.dumps(ITEMS, separators=(",", ":")).encode()
BARE_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


@dataclass(frozen=True)
class Record:
    """One element of the payload, as the Litestar handlers return it."""

    id: int
    name: str
    price: float
    tags: list[str]
    in_stock: bool


RECORDS = [Record(**item) for item in ITEMS]


@dataclass(frozen=True)
class Target:
    """A goal of a variant, as a ratio of its figure to another variant's; reported only.

    `throughput`: the variant's requests/s are at least `ratio` times `versus`'s;
    `p99`: its 99th-percentile latency is at most `ratio` times `versus`'s.
    """

    ratio: float
    versus: str = "bare ASGI"
    kind: Literal["throughput", "p99"] = "throughput"

    def describe(self) -> str:
        """The goal in words, e.g. `>= 0.60 x bare ASGI`."""
        if self.kind == "p99":
            return f"p99 <= {self.ratio:.2f} x {self.versus}'s"
        return f">= {self.ratio:.2f} x {self.versus}"


@dataclass(frozen=True)
class Variant:
    """One measured configuration: which app, how it is asked, and its targets."""

    framework: Framework
    name: str
    app: AppKind
    conditional: bool = False  # send If-None-Match with the response's ETag
    targets: tuple[Target, ...] = ()
    uncached: str | None = None  # the route's own uncached variant, to report the ratio to
    freeze_gc: bool = False  # the server calls gc.freeze() once its app is built

    @property
    def label(self) -> str:
        """The name, with the framework (the atomcache variants' names are shared)."""
        return f"{self.framework}: {self.name}"

    @property
    def status(self) -> int:
        """The status every measured response must have."""
        return 304 if self.conditional else 200

    @property
    def is_atomcache(self) -> bool:
        """Whether the route is served by atomcache (which marks hits in Cache-Status)."""
        return self.app in ("redis", "memory", "local", "checked-memory")

    @property
    def checked(self) -> bool:
        """Whether the route has a dependency (FastAPI) or a guard (Litestar)."""
        return self.app in CHECKED_APPS


LOCAL_HIT = "atomcache hit (redis + local tier)"
MEMORY_HIT = "atomcache hit (memory)"
FROZEN_REDIS_HIT = "atomcache hit (redis), gc.freeze()"
# The goals of each framework's atomcache variants: hits near the bare ASGI ceiling,
# a Redis hit's p99 near the local tier's, a 304 at least as fast as the 200 hit, and a
# hit behind a check well above the same route uncached.
REDIS_GOALS = (Target(0.5), Target(2.0, LOCAL_HIT, "p99"))
IN_PROCESS_GOALS = (Target(0.6),)
NOT_MODIFIED_GOALS = (Target(1.0, MEMORY_HIT),)

VARIANTS = (
    Variant("fastapi", "bare ASGI", "asgi"),
    Variant("fastapi", "bare ASGI, a hit's fields", "asgi-fields"),
    Variant("fastapi", "ceiling", "ceiling"),
    Variant("fastapi", "fastapi", "plain"),
    Variant("fastapi", "atomcache hit (redis)", "redis", targets=REDIS_GOALS),
    Variant("fastapi", FROZEN_REDIS_HIT, "redis", targets=REDIS_GOALS, freeze_gc=True),
    Variant("fastapi", MEMORY_HIT, "memory", targets=IN_PROCESS_GOALS),
    Variant("fastapi", LOCAL_HIT, "local", targets=IN_PROCESS_GOALS),
    Variant("fastapi", "atomcache 304", "memory", conditional=True, targets=NOT_MODIFIED_GOALS),
    Variant("fastapi", "uncached, 1 dependency", "checked"),
    Variant(
        "fastapi",
        "atomcache hit, 1 dependency (memory)",
        "checked-memory",
        targets=(Target(3.0, "uncached, 1 dependency"),),
        uncached="uncached, 1 dependency",
    ),
    Variant("litestar", "bare ASGI", "asgi"),
    Variant("litestar", "bare ASGI, a hit's fields", "asgi-fields"),
    Variant("litestar", "litestar ceiling", "ceiling"),
    Variant("litestar", "litestar", "plain"),
    Variant("litestar", "litestar cache= (redis store)", "store-redis"),
    Variant("litestar", "litestar cache= (memory store)", "store-memory"),
    Variant(
        "litestar",
        "atomcache hit (redis)",
        "redis",
        targets=(*REDIS_GOALS, Target(1.3, "litestar cache= (redis store)")),
    ),
    Variant("litestar", FROZEN_REDIS_HIT, "redis", targets=REDIS_GOALS, freeze_gc=True),
    Variant(
        "litestar",
        MEMORY_HIT,
        "memory",
        targets=(*IN_PROCESS_GOALS, Target(1.0, "litestar cache= (memory store)")),
    ),
    Variant("litestar", LOCAL_HIT, "local", targets=IN_PROCESS_GOALS),
    Variant("litestar", "atomcache 304", "memory", conditional=True, targets=NOT_MODIFIED_GOALS),
    Variant("litestar", "uncached, 1 guard", "checked"),
    Variant(
        "litestar",
        "atomcache hit, 1 guard (memory)",
        "checked-memory",
        targets=(Target(3.0, "uncached, 1 guard"),),
        uncached="uncached, 1 guard",
    ),
)


@dataclass(frozen=True)
class Answer:
    """One response, as a probe saw it."""

    status: int
    headers: dict[str, str]
    body: bytes


def atomcache_for(kind: AppKind, redis_url: str, namespace: str) -> Cache:
    """The cache of an atomcache variant: in memory, on Redis, or on Redis with a local tier."""
    if kind in ("memory", "checked-memory"):
        return Cache()
    local_ttl = LOCAL_TTL if kind == "local" else None
    return Cache.from_url(redis_url, namespace=namespace, local_ttl=local_ttl)


async def bench_dependency(request: Request) -> str:
    """The dependency of FastAPI's checked routes: the X-Bench field, 401 without it.

    An `async def`: FastAPI would run a plain function in its thread pool.
    """
    value = request.headers.get(CHECK_FIELD)
    if value is None:
        raise HTTPException(REFUSED)
    return value


async def bench_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The guard of Litestar's checked routes: refuses a request without X-Bench.

    An `async def`: Litestar would run a plain function in a worker thread.
    """
    if connection.headers.get(CHECK_FIELD) is None:
        raise NotAuthorizedException


def build_fastapi_app(kind: AppKind, redis_url: str, namespace: str) -> FastAPI:
    """The FastAPI app of one variant."""
    app = FastAPI()
    if kind == "ceiling":

        @app.get(PATH)
        async def pre_encoded() -> Response:
            """The body, encoded once at import."""
            return Response(content=BODY, media_type="application/json")

        return app

    async def items() -> list[dict[str, Any]]:
        """The items, for FastAPI to validate and encode through the response model."""
        return ITEMS

    dependencies = [Depends(bench_dependency)] if kind in CHECKED_APPS else None
    if kind in ("plain", "checked"):
        app.get(PATH, response_model=list[Item], dependencies=dependencies)(items)
        return app
    if kind not in ("redis", "memory", "local", "checked-memory"):
        msg = f"no FastAPI app {kind!r}"
        raise ValueError(msg)
    cache = atomcache_for(kind, redis_url, namespace)
    route = app.get(PATH, response_model=list[Item], dependencies=dependencies)
    route(cached(ttl=TTL)(items))  # @app.get over @cached
    setup_cache(app, cache)
    return app


def build_litestar_app(kind: AppKind, redis_url: str, namespace: str) -> Litestar:
    """The Litestar app of one variant."""
    if kind == "ceiling":

        @get(PATH)
        async def pre_encoded() -> litestar.Response[bytes]:
            """The body, encoded once at import."""
            return litestar.Response(content=BODY, media_type="application/json")

        return Litestar([pre_encoded])

    async def items() -> list[Record]:
        """The items, for Litestar to encode."""
        return RECORDS

    guards = [bench_guard] if kind in CHECKED_APPS else None
    if kind in ("plain", "checked"):
        return Litestar([get(PATH, guards=guards)(items)])
    if kind in ("store-redis", "store-memory"):
        store = (
            RedisStore.with_client(url=redis_url, namespace=f"{namespace}-litestar")
            if kind == "store-redis"
            else MemoryStore()
        )
        return Litestar(
            [get(PATH, cache=TTL)(items)],
            stores={STORE: store},
            response_cache_config=ResponseCacheConfig(store=STORE),
        )
    cache = atomcache_for(kind, redis_url, namespace)
    return Litestar(
        [get(PATH, guards=guards)(cached(ttl=TTL)(items))], plugins=[AtomCachePlugin(cache)]
    )


async def bare_asgi(_scope: dict[str, Any], _receive: Any, send: Any) -> None:
    """The physical ceiling: an ASGI callable sending the body as constant bytes."""
    await send({"type": "http.response.start", "status": 200, "headers": BARE_HEADERS})
    await send({"type": "http.response.body", "body": BODY})


# The fields of an atomcache hit on the bench route, as constants: uvicorn checks and
# encodes each response field, so the number of fields is part of a response's cost.
HIT_HEADERS = [
    *BARE_HEADERS,
    (b"vary", b"Cookie, Authorization"),
    (b"etag", b'"j0oREvoUubsdrlyexlWzJw"'),
    (b"cache-control", b"max-age=3599"),
    (b"cache-status", b"atomcache; hit; ttl=3599"),
]


async def bare_asgi_fields(_scope: dict[str, Any], _receive: Any, send: Any) -> None:
    """The bare callable, sending the fields an atomcache hit sends (`HIT_HEADERS`)."""
    await send({"type": "http.response.start", "status": 200, "headers": HIT_HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def serve(
    framework: Framework,
    kind: AppKind,
    port: int,
    redis_url: str,
    namespace: str,
    *,
    freeze_gc: bool = False,
) -> None:
    """Run one variant's app in this process, like `uvicorn --no-access-log ...`.

    With `freeze_gc`, the objects that exist once the app is built (modules, the app,
    its routes) are moved out of the garbage collector's reach (`gc.freeze()`, as the
    docs' deployment notes advise), so its full collections scan only what requests made.
    """
    build = build_fastapi_app if framework == "fastapi" else build_litestar_app
    bare = {"asgi": bare_asgi, "asgi-fields": bare_asgi_fields}
    app = bare[kind] if kind in bare else build(kind, redis_url, namespace)
    if freeze_gc:
        gc.collect()
        gc.freeze()
    uvicorn.run(
        app,
        host=LOOPBACK,
        port=port,
        log_level="warning",
        access_log=False,
    )


def fetch(port: int, headers: dict[str, str] | None = None) -> Answer:
    """One GET of the route on a fresh connection (no proxy, whatever the environment)."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        connection.request("GET", PATH, headers=headers or {})
        response = connection.getresponse()
        fields = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, fields, response.read())
    finally:
        connection.close()


@contextlib.contextmanager
def running(variant: Variant, redis_url: str, namespace: str) -> Iterator[int]:
    """Start a uvicorn process serving `variant`; yield its port once it answers; kill it."""
    port = free_port()
    command = [
        sys.executable, str(Path(__file__).resolve()), "--serve", variant.app,
        "--framework", variant.framework, "--port", str(port),
        "--redis-url", redis_url, "--namespace", namespace,
        *(["--freeze-gc"] if variant.freeze_gc else []),
    ]  # fmt: skip
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                msg = f"the {variant.label} server exited with status {process.returncode}"
                raise RuntimeError(msg)
            with contextlib.suppress(OSError):
                fetch(port)
                break
            if time.monotonic() > deadline:
                msg = f"the {variant.label} server did not answer within {START_TIMEOUT} s"
                raise RuntimeError(msg)
            time.sleep(0.05)  # nothing to await: uvicorn logs no "ready" at warning level
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


def expect(answer: Answer, variant: Variant, what: str) -> None:
    """Fail unless `answer` is what every measured request of `variant` must get."""
    problems = []
    if answer.status != variant.status:
        problems.append(f"status {answer.status}")
    if variant.status == 200 and answer.body != BODY:  # noqa: PLR2004
        problems.append(f"a body of {len(answer.body)} bytes that is not the payload")
    if variant.is_atomcache and not answer.headers.get("cache-status", "").startswith(HIT):
        problems.append(f"Cache-Status {answer.headers.get('cache-status')!r}")
    if problems:
        msg = f"{variant.label}, {what}: expected a {variant.status}, got {', '.join(problems)}"
        raise RuntimeError(msg)


def expect_refusal(variant: Variant, port: int, what: str) -> None:
    """Fail unless a checked route refuses a request without X-Bench (its entry stored)."""
    if not variant.checked:
        return
    answer = fetch(port)
    if answer.status != REFUSED:
        msg = (
            f"{variant.label}, {what}: expected a {REFUSED} without {CHECK_FIELD}, "
            f"got {answer.status} (Cache-Status {answer.headers.get('cache-status')!r})"
        )
        raise RuntimeError(msg)


def prepare(variant: Variant, port: int) -> dict[str, str]:
    """Warm the route and check its answers; return the request fields to send."""
    headers = {CHECK_FIELD: CHECK_VALUE} if variant.checked else {}
    fetch(port, headers)  # the first request of a cached route fills the cache
    answer = fetch(port, headers)
    if variant.conditional:
        headers = {**headers, "If-None-Match": answer.headers["etag"]}
        answer = fetch(port, headers)
    expect(answer, variant, "before the run")
    expect_refusal(variant, port, "before the run")
    return headers


def run_python_client(
    port: int, variant: Variant, headers: dict[str, str], *, connections: int, duration: float
) -> dict[str, Any]:
    """Measure with bench/_load.py in its own process; fail on any unexpected response."""
    command = [
        sys.executable, str(LOAD_GENERATOR), "--port", str(port), "--path", PATH,
        "--connections", str(connections), "--duration", str(duration),
        "--warmup", str(WARMUP), "--status", str(variant.status),
    ]  # fmt: skip
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    if variant.is_atomcache:
        command += ["--expect", f"cache-status: {HIT}"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=WARMUP + duration + 60, check=False
    )
    if done.returncode != 0:
        msg = f"{variant.label}: the load generator failed:\n{done.stderr.strip()}"
        raise RuntimeError(msg)
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def run_wrk(
    port: int,
    variant: Variant,
    headers: dict[str, str],
    *,
    connections: int,
    duration: float,
) -> dict[str, Any]:
    """Measure with wrk after a warm-up run; fail on 4xx/5xx answers or socket errors.

    wrk does not tell a 200 from a 304: `expect` checks one answer after the run.
    """
    fields = [
        argument for name, value in headers.items() for argument in ("-H", f"{name}: {value}")
    ]
    url = f"http://{LOOPBACK}:{port}{PATH}"
    seconds = max(1, round(duration))
    output = ""
    for length in (max(1, round(WARMUP)), seconds):
        command = ["wrk", "-t1", f"-c{connections}", f"-d{length}s", "--latency", *fields, url]
        output = subprocess.run(
            command, capture_output=True, text=True, timeout=length + 60, check=True
        ).stdout
        if "Non-2xx or 3xx responses" in output or "Socket errors" in output:
            msg = f"{variant.label}: wrk saw errors:\n{output}"
            raise RuntimeError(msg)
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        msg = f"{variant.label}: no Requests/sec in wrk's output:\n{output}"
        raise RuntimeError(msg)
    rate = float(found.group(1))
    return {
        "responses": round(rate * seconds),
        "seconds": seconds,
        "requests_per_second": rate,
        "p50_ms": wrk_percentile(output, "50%"),
        "p99_ms": wrk_percentile(output, "99%"),
    }


def wrk_percentile(output: str, percentile: str) -> float:
    """A latency percentile from wrk's `--latency` distribution, in milliseconds."""
    found = re.search(rf"^\s*{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if found is None:
        msg = f"no {percentile} latency in wrk's output:\n{output}"
        raise RuntimeError(msg)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
    return float(found.group(1)) * scale


def choose_client(choice: str) -> str:
    """`wrk` if asked for or, with `auto`, if it is on PATH; else `python`."""
    found = shutil.which("wrk") is not None
    if choice == "wrk" and not found:
        msg = "--client wrk, but there is no wrk on PATH"
        raise RuntimeError(msg)
    return "wrk" if choice == "wrk" or (choice == "auto" and found) else "python"


def measure(
    variants: tuple[Variant, ...],
    redis_url: str,
    namespace: str,
    *,
    client: str,
    connections: int,
    duration: float,
    rounds: int,
) -> dict[Variant, list[dict[str, Any]]]:
    """Start every variant's server, then load each in turn, `rounds` times.

    The order turns by one variant every round, so none is always measured first.
    Returns each variant's figures, one dict per round.
    """
    run = run_wrk if client == "wrk" else run_python_client
    samples: dict[Variant, list[dict[str, Any]]] = {variant: [] for variant in variants}
    with contextlib.ExitStack() as servers:
        ports = {
            variant: servers.enter_context(running(variant, redis_url, namespace))
            for variant in variants
        }
        headers = {variant: prepare(variant, port) for variant, port in ports.items()}
        for number in range(rounds):
            turn = number % len(variants)
            for variant in variants[turn:] + variants[:turn]:
                samples[variant].append(
                    run(
                        ports[variant],
                        variant,
                        headers[variant],
                        connections=connections,
                        duration=duration,
                    )
                )
            print(f"round {number + 1}/{rounds} (requests/s):")
            for framework in dict.fromkeys(variant.framework for variant in variants):
                rates = ", ".join(
                    f"{variant.name} {figures[-1]['requests_per_second']:,.0f}"
                    for variant, figures in samples.items()
                    if variant.framework == framework
                )
                print(f"  {framework}: {rates}")
        for variant, port in ports.items():
            expect(fetch(port, headers[variant]), variant, "after the run")
            expect_refusal(variant, port, "after the run")
    return samples


def summarize(
    samples: dict[Variant, list[dict[str, Any]]], settings: dict[str, Any]
) -> list[dict[str, Any]]:
    """One row per variant: median requests/s and latencies over the rounds, ratios, goals.

    `ratio_to_ceiling` is to the ceiling of the variant's framework, `ratio_to_bare_asgi`
    to its bare ASGI callable; `ratio_to_uncached` to the route's own uncached variant
    (named in `uncached`), for the variants that have one, else None; each target gives
    the ratio it is about and whether it is met.
    """

    def median(variant: Variant, figure: str) -> float:
        return float(statistics.median(sample[figure] for sample in samples[variant]))

    by_name = {(variant.framework, variant.name): variant for variant in samples}
    rates = {key: median(variant, "requests_per_second") for key, variant in by_name.items()}
    p99s = {key: median(variant, "p99_ms") for key, variant in by_name.items()}
    ceilings = {variant.framework: variant.name for variant in samples if variant.app == "ceiling"}
    bare = {variant.framework: variant.name for variant in samples if variant.app == "asgi"}
    rows = []
    for variant, figures in samples.items():
        key = (variant.framework, variant.name)
        rounds = [figure["requests_per_second"] for figure in figures]
        cpu = [figure["client_cpu"] for figure in figures if "client_cpu" in figure]
        rate = rates[key]
        targets = []
        for target in variant.targets:
            other = (variant.framework, target.versus)
            if target.kind == "p99":
                ratio = p99s[key] / p99s[other]
                met = ratio <= target.ratio
            else:
                ratio = rate / rates[other]
                met = ratio >= target.ratio
            targets.append(
                {
                    "versus": target.versus,
                    "kind": target.kind,
                    "goal": target.describe(),
                    "minimum": target.ratio if target.kind == "throughput" else None,
                    "maximum": target.ratio if target.kind == "p99" else None,
                    "ratio": ratio,
                    "met": met,
                }
            )
        rows.append(
            {
                "framework": variant.framework,
                "variant": variant.name,
                "requests_per_second": rate,
                "min": min(rounds),
                "max": max(rounds),
                "rounds": rounds,
                "p50_ms": median(variant, "p50_ms"),
                "p99_ms": p99s[key],
                "client_cpu": statistics.median(cpu) if cpu else None,
                "ratio_to_ceiling": rate / rates[variant.framework, ceilings[variant.framework]],
                "ratio_to_bare_asgi": rate / rates[variant.framework, bare[variant.framework]],
                "uncached": variant.uncached,
                "ratio_to_uncached": (
                    rate / rates[variant.framework, variant.uncached]
                    if variant.uncached is not None
                    else None
                ),
                "targets": targets,
                **settings,
            }
        )
    return rows


@contextlib.contextmanager
def redis_server_url() -> Iterator[str]:
    """ATOMCACHE_REDIS_URL if set, else the URL of a throwaway `redis-server`."""
    configured = os.environ.get("ATOMCACHE_REDIS_URL")
    if configured:
        yield configured
        return
    with RedisServer() as server:
        yield server.url


def show(rows: list[dict[str, Any]]) -> None:
    """Print the table and whether each goal is met."""
    print(
        f"{'framework':<9} {'variant':<36} {'requests/s':>10} {'min-max over rounds':>21} "
        f"{'x ceiling':>9} {'x bare ASGI':>11} {'x uncached':>10} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'client CPU':>10}"
    )
    for row in rows:
        cpu = "-" if row["client_cpu"] is None else f"{row['client_cpu']:.0%}"
        spread = f"{row['min']:,.0f}-{row['max']:,.0f}"
        uncached = "-" if row["ratio_to_uncached"] is None else f"{row['ratio_to_uncached']:.2f}"
        print(
            f"{row['framework']:<9} {row['variant']:<36} {row['requests_per_second']:>10,.0f} "
            f"{spread:>21} {row['ratio_to_ceiling']:>9.2f} {row['ratio_to_bare_asgi']:>11.2f} "
            f"{uncached:>10} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {cpu:>10}"
        )
    for row in rows:
        for target in row["targets"]:
            verdict = "met" if target["met"] else "NOT met"
            print(
                f"goal: {row['framework']}: {row['variant']} {target['goal']}: "
                f"{target['ratio']:.2f}, {verdict}"
            )


def main() -> None:
    """Measure every variant, print the comparison and write the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("all", *get_args(Framework)), default="all")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="measurements per variant")
    parser.add_argument("--client", choices=("auto", "python", "wrk"), default="auto")
    parser.add_argument("--serve", choices=get_args(AppKind), help="serve one app (--framework)")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default="", help=argparse.SUPPRESS)
    parser.add_argument("--freeze-gc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:  # a server process started by `running`
        if args.framework == "all" or args.port is None:
            parser.error("--serve needs --framework fastapi|litestar and --port")
        serve(
            args.framework,
            args.serve,
            args.port,
            args.redis_url,
            args.namespace,
            freeze_gc=args.freeze_gc,
        )
        return
    variants = tuple(
        variant for variant in VARIANTS if args.framework in ("all", variant.framework)
    )
    client = choose_client(args.client)
    settings = {
        "client": client,
        "connections": args.connections,
        "duration_s": args.duration,
        "body_bytes": len(BODY),
    }
    print(
        f"http: {len(BODY):,} bytes of JSON, {client} client, {args.connections} connections, "
        f"{args.rounds} rounds of {WARMUP:g} s warm-up + {args.duration:g} s per variant; "
        f"uvicorn {uvicorn.__version__}, litestar {litestar.__version__.formatted(short=True)}, "
        f"Python {sys.version.split()[0]}"
    )
    with redis_server_url() as url:
        samples = measure(
            variants,
            url,
            f"bench-http-{uuid.uuid4().hex[:10]}",
            client=client,
            connections=args.connections,
            duration=args.duration,
            rounds=args.rounds,
        )
    rows = summarize(samples, settings)
    show(rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
