"""A process stays within its cache's byte bound while a route is hit with junk queries.

A uvicorn process serves a `@cached` route answering 1 MiB; it is asked 300 times, each
with a query string of its own (300 MiB of distinct entries). Its resident memory
(`VmRSS`) may grow by the bound (`max_bytes`, or `local_max_bytes` for the local tier)
plus `OVERHEAD`, the allowance docs/reliability.md documents, and no more.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support.processes import start_listening, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

MIB = 1024 * 1024
BOUND = 32 * MIB
OVERHEAD = 32 * MIB  # docs/reliability.md, "Memory"
REQUESTS = 300

APP = """
import sys
import uvicorn
from fastapi import FastAPI, Response
from atomcache_core import Cache
from atomcache_fastapi import cached, setup_cache

url, bound, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
local = {"local_ttl": 60, "local_max_bytes": bound}
options = {"max_bytes": bound} if url == "memory://" else local
app = FastAPI()

@app.get("/big")
@cached(ttl=600, public=True)
async def big() -> Response:
    return Response(b"x" * (1024 * 1024), media_type="application/octet-stream")

setup_cache(app, Cache.from_url(url, namespace="memory-bound", **options))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def resident_bytes(pid: int) -> int:
    """The process's resident set size (`VmRSS` of /proc/PID/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def get(port: int, query: str) -> bytes:
    """One GET of /big?QUERY on a fresh connection; its body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", f"/big?{query}")
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:200])
        return body
    finally:
        connection.close()


@pytest.fixture(params=["memory", "redis + local tier"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """The app's process, started with the bound; (pid, port)."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    log = tmp_path / "app.log"

    def launch(port: int) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            command = [sys.executable, "-c", textwrap.dedent(APP), url, str(BOUND), str(port)]
            return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)

    process, port = start_listening("app", launch, log.read_text)
    try:
        yield process.pid, port
    finally:
        stop(process, timeout=5.0)


def test_resident_memory_stays_within_the_bound(server: tuple[int, int]) -> None:
    """Growth over 300 distinct 1 MiB entries stays under the bound plus the overhead."""
    pid, port = server
    for warm_up in range(3):  # imports, first allocations, the first fills
        get(port, f"warm={warm_up}")
    baseline = resident_bytes(pid)
    highest = baseline
    for index in range(REQUESTS):
        assert len(get(port, f"junk={index}")) == MIB
        highest = max(highest, resident_bytes(pid))
    growth = highest - baseline
    assert growth <= BOUND + OVERHEAD, f"grew by {growth / MIB:.0f} MiB"
    assert get(port, f"junk={REQUESTS - 1}") == b"x" * MIB  # the latest entries are kept
