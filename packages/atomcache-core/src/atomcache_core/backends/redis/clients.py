"""The client the Redis backends are given, and the clients of their own they make.

`RedisClient` is the type every backend takes; `check_client` refuses one that would
return text; `as_bytes` and `as_milliseconds` convert replies and arguments. Pub/sub
connections live outside the given client's pool: `pubsub_client` (one server) and
`node_client` (one cluster node).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, TypeAlias

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio.cluster import ClusterNode

__all__ = [
    "CLIENT_OPTIONS",
    "RedisClient",
    "any_primary",
    "as_bytes",
    "as_milliseconds",
    "check_client",
    "node_client",
    "pubsub_client",
]

RedisClient: TypeAlias = Redis | RedisCluster
"""A redis-py asyncio client: one server (also behind Sentinel) or a Redis Cluster."""

#: What `Redis(...)` accepts (its connections take these too).
CLIENT_OPTIONS = frozenset(inspect.signature(Redis.__init__).parameters) - {"self"}


def check_client(client: RedisClient) -> RedisClient:
    """`client`, if it returns bytes.

    Raises:
        ConfigurationError: it was made with `decode_responses=True`.
    """
    if client.get_encoder().decode_responses:
        msg = (
            "atomcache stores bytes: create the Redis client with decode_responses=False "
            "(the default), or let Cache.from_url(...) create it"
        )
        raise ConfigurationError(msg)
    return client


def as_bytes(value: bytes | str | None) -> bytes | None:
    """Narrow redis-py's reply type: the client is checked to return bytes."""
    return value.encode() if isinstance(value, str) else value


def as_milliseconds(seconds: float) -> int:
    """A ttl as the whole milliseconds `PX` takes, at least one.

    Raises:
        ConfigurationError: `seconds` is not positive.
    """
    if not seconds > 0:
        msg = f"ttl must be a positive number of seconds, got {seconds!r}"
        raise ConfigurationError(msg)
    return max(1, round(seconds * 1000))


def any_primary(cluster: RedisCluster) -> ClusterNode:
    """The node for classic pub/sub on a cluster: any node sees every `PUBLISH`."""
    return cluster.get_primaries()[0]


def pubsub_client(client: Redis) -> Redis:
    """A client of its own, on `client`'s server, for the pub/sub connection.

    Its connections are made like `client`'s (same class and settings: TLS, a unix
    socket, a Sentinel-managed master all carry over) but outside `client`'s pool, so a
    subscriber never holds one of the connections that commands wait for: a pool of
    `max_connections=N` serves N commands at once, and pub/sub has one more.
    """
    from redis.asyncio import ConnectionPool  # noqa: PLC0415 - one server only

    pool = client.connection_pool
    own = ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
    return Redis.from_pool(own)


def node_client(node: ClusterNode) -> Redis:
    """A client of its own to one cluster node, for a pub/sub connection to it.

    No retries: a dropped connection must surface at once, to be re-subscribed on the
    node that owns the channel's slot now.
    """
    accepted = CLIENT_OPTIONS.intersection(node.connection_kwargs)
    options = {name: node.connection_kwargs[name] for name in accepted}
    options["ssl"] = issubclass(node.connection_class, SSLConnection)
    options["retry"] = Retry(NoBackoff(), 0)
    return Redis(**options)
