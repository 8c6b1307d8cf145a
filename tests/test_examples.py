"""The examples run, on the in-memory default and on Redis (ATOMCACHE_REDIS_URL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "core_demo.py",
            ["None is cacheable    -> True None", "0.2 s TTL after 0.25 -> (expired)"],
        ),
        ("http_demo.py", ["revalidate 304", "atomcache; hit", "atomcache; fwd=request; stored"]),
    ],
)
def test_example_runs(
    script: str, expected: list[str], backend: str, request: pytest.FixtureRequest
) -> None:
    """The script exits 0 and prints what its docstring promises."""
    env = {key: value for key, value in os.environ.items() if key != "ATOMCACHE_REDIS_URL"}
    if backend == "redis":
        env["ATOMCACHE_REDIS_URL"] = request.getfixturevalue("redis_url")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for line in expected:
        assert line in result.stdout
    if backend == "redis" and script == "core_demo.py":
        assert "storage=RedisStorage" in result.stdout
