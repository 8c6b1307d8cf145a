"""The load generator of bench/http.py when `wrk` is not installed.

Opens C keep-alive HTTP/1.1 connections to a loopback server with raw asyncio streams;
each sends a GET, reads the status line, the fields and the Content-Length body, checks
the status (and, if asked, that a field is present), and sends the next one. Responses
completing in the first `--warmup` seconds are not counted; the next `--duration`
seconds are; then every connection stops by itself. Runs in its own process, so the
benchmark's other work does not slow it down, and prints one JSON object: responses
counted, seconds measured, requests/s, the median and 99th percentile of the counted
responses' latencies (milliseconds, from sending the request to its last body byte)
and the CPU share this process used meanwhile.
An unexpected response makes it exit with status 1 and say what it got.

    python bench/_load.py --port 8000 [--path /items] [--connections 32] [--duration 4]
        [--warmup 1] [--status 200] [--header 'If-None-Match: "..."']
        [--expect 'cache-status: atomcache; hit']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = b"\r\ncontent-length:"
BODILESS_STATUSES = (b"204", b"304")
GRACE = 10.0  # seconds a stalled server gets after the end before the run is failed


class UnexpectedResponseError(Exception):
    """The server answered something the benchmark did not ask for."""


@dataclass(frozen=True)
class Expectation:
    """What every response must look like."""

    status: bytes
    field: bytes = b""  # lower-case substring every response head must contain

    def body_length(self, head: bytes) -> int:
        """Check a response head (status line and fields); return its body's length.

        Raises:
            UnexpectedResponseError: another status, the expected field missing, or a
                body whose length is not given by Content-Length.
        """
        lowered = head.lower()
        if head[9:12] != self.status or not head.startswith(b"HTTP/1.1 "):
            raise UnexpectedResponseError(self._describe(f"status {self.status.decode()}", head))
        if self.field not in lowered:
            raise UnexpectedResponseError(self._describe(f"field {self.field!r}", head))
        start = lowered.find(CONTENT_LENGTH)
        if start < 0:
            if self.status in BODILESS_STATUSES:
                return 0
            raise UnexpectedResponseError(self._describe("a Content-Length", head))
        start += len(CONTENT_LENGTH)
        return int(lowered[start : lowered.index(b"\r\n", start)])

    def _describe(self, what: str, head: bytes) -> str:
        text = head.decode("latin-1").strip()
        return f"expected {what}, got:\n{text}"


@dataclass(frozen=True)
class Window:
    """The measured interval, in the event loop's clock."""

    start: float
    end: float


async def keep_requesting(
    port: int, request: bytes, expectation: Expectation, window: Window
) -> list[float]:
    """Send requests one after another on one connection; the counted ones' latencies (s)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    clock = asyncio.get_running_loop().time
    latencies: list[float] = []
    try:
        while True:
            sent = clock()
            writer.write(request)  # one small request in flight: no need to drain
            length = expectation.body_length(await reader.readuntil(HEAD_END))
            if length:
                await reader.readexactly(length)
            now = clock()
            if now >= window.end:
                return latencies
            if now >= window.start:
                latencies.append(now - sent)
    finally:
        writer.close()


async def measure(
    port: int,
    request: bytes,
    expectation: Expectation,
    *,
    connections: int,
    warmup: float,
    duration: float,
) -> dict[str, float]:
    """Run the connections through warm-up and the measured window; return the figures."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    window = Window(now + warmup, now + warmup + duration)
    cpu: list[float] = []
    loop.call_at(window.start, lambda: cpu.append(time.process_time()))
    loop.call_at(window.end, lambda: cpu.append(time.process_time()))
    workers = [keep_requesting(port, request, expectation, window) for _ in range(connections)]
    each = await asyncio.wait_for(asyncio.gather(*workers), warmup + duration + GRACE)
    latencies = [latency for connection in each for latency in connection]
    responses = len(latencies)
    percentiles = statistics.quantiles(latencies, n=100) if responses > 1 else [0.0] * 99
    return {
        "responses": responses,
        "seconds": duration,
        "requests_per_second": responses / duration,
        "p50_ms": percentiles[49] * 1000,
        "p99_ms": percentiles[98] * 1000,
        "client_cpu": (cpu[1] - cpu[0]) / duration if len(cpu) == 2 else float("nan"),  # noqa: PLR2004
    }


def main() -> None:
    """Parse the options, run the load and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/items")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--expect", default="", help="a field every response must carry")
    args = parser.parse_args()
    fields = "".join(f"{header}\r\n" for header in args.header)
    request = f"GET {args.path} HTTP/1.1\r\nHost: {LOOPBACK}:{args.port}\r\n{fields}\r\n"
    expectation = Expectation(str(args.status).encode(), args.expect.lower().encode("latin-1"))
    try:
        figures = asyncio.run(
            measure(
                args.port,
                request.encode("latin-1"),
                expectation,
                connections=args.connections,
                warmup=args.warmup,
                duration=args.duration,
            )
        )
    except UnexpectedResponseError as exc:
        sys.exit(f"unexpected response: {exc}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
