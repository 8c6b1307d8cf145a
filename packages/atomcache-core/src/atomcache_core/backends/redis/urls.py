"""redis-py asyncio clients from `Cache.from_url` URLs: one server, a cluster, Sentinel.

A process forked from one that used such a client (gunicorn `--preload` after a
warm-up, `multiprocessing` with fork) must not send commands on its parent's sockets:
both would read replies meant for the other. redis-py's synchronous pools check the
process id for this; its asyncio pools do not, so in a forked child every client made
here forgets its parent's connections and opens its own (`_forget_parents_connections`).
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import os
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from atomcache_core.backends.redis.clients import CLIENT_OPTIONS
from atomcache_core.exceptions import ConfigurationError
from atomcache_core.keys import redacted

if TYPE_CHECKING:
    from atomcache_core.backends.redis.clients import RedisClient

__all__ = ["client_for", "url_of"]

_POOL_DEFAULTS = {"max_connections": 100, "timeout": 2.0}
#: The keyword arguments redis-py accepts for each kind of URL: the client's (which
#: its connections take too), the pool's, the cluster's, Sentinel's own.
_ACCEPTED = {
    "server": CLIENT_OPTIONS | {"timeout", "queue_class", "connection_class"},
    "cluster": CLIENT_OPTIONS | (frozenset(inspect.signature(RedisCluster.__init__).parameters)),
    "sentinel": CLIENT_OPTIONS | {"timeout", "sentinel_kwargs", "connection_class"},
}
_TIMEOUTS = ("socket_timeout", "socket_connect_timeout")


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """The pool of a Sentinel-managed master, bounded like a one-server client's.

    redis-py's own `SentinelConnectionPool` raises `MaxConnectionsError` as soon as
    `max_connections` (default 100) are in use, which a burst of commands reaches and
    which reads as Redis being away. This one waits up to `timeout` seconds for a free
    connection instead, as `BlockingConnectionPool` does; connections still follow the
    master that the Sentinels name.
    """


class ExplainedSentinel(Sentinel):
    """redis-py's `Sentinel`, whose "no master found" has a Sentinel's refusal as its cause.

    redis-py names each Sentinel's error in that message only, and since redis-py 6
    by its class alone (`auth:AuthenticationError`): a password the Sentinels refuse
    would read as Sentinel knowing no master. When the message says a Sentinel refused
    the credentials, the Sentinels are asked again (they answer at once) for their
    words, chained as the `__cause__` the error translation reads.
    """

    async def discover_master(self, service_name: str) -> Any:
        """The master's `(host, port)`, as redis-py finds it.

        Raises:
            MasterNotFoundError: no Sentinel named a master; caused by a Sentinel's
                `AuthenticationError` when one refused the credentials.
        """
        try:
            return await super().discover_master(service_name)
        except MasterNotFoundError as not_found:
            if "AuthenticationError" not in str(not_found):
                raise
            answers = await asyncio.gather(
                *(sentinel.ping() for sentinel in self.sentinels), return_exceptions=True
            )
            refusal = next((a for a in answers if isinstance(a, AuthenticationError)), None)
            if refusal is None:
                raise
            raise not_found from refusal


def client_for(url: str, options: dict[str, Any]) -> tuple[RedisClient, list[Redis]]:
    """The client for `url`, and the Sentinels' clients to close with it (if any)."""
    scheme = url.partition("://")[0].lower()
    kind = "cluster" if scheme.endswith("+cluster") else "server"
    kind = "sentinel" if scheme.endswith("+sentinel") else kind
    check_options(kind, options)
    client: RedisClient
    sentinels: list[Redis] = []
    if kind == "cluster":
        client = cluster_client(url, options)
    elif kind == "sentinel":
        client, sentinels = sentinel_client(url, options)
    else:
        client = server_client(url, options)
    _CLIENTS.update([client, *sentinels])
    return client, sentinels


def check_options(kind: str, options: dict[str, Any]) -> None:
    """Refuse keyword arguments redis-py would not take for this kind of URL.

    redis-py accepts unknown pool options when the client is made and fails on every
    connection afterwards, which looks like Redis being away: a typo is caught here,
    in `sentinel_kwargs` too.

    Raises:
        ConfigurationError: an option is unknown, or `sentinel_kwargs` is not a dict;
            the message suggests the closest option.
    """
    _refuse_unknown(options, _ACCEPTED[kind] - {"self", "host", "port", "startup_nodes"}, "")
    given = options.get("sentinel_kwargs")
    if kind != "sentinel" or given is None:
        return
    if not isinstance(given, dict):
        msg = (
            f"sentinel_kwargs must be a dict of the Sentinels' connection options, such as "
            f"{{'password': '...'}}, got {type(given).__name__}"
        )
        raise ConfigurationError(msg)
    _refuse_unknown(given, CLIENT_OPTIONS - {"host", "port"}, " in sentinel_kwargs")


def _refuse_unknown(options: dict[str, Any], accepted: frozenset[str], where: str) -> None:
    for name in options:
        if name not in accepted:
            close = difflib.get_close_matches(name, sorted(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = (
                f"unknown option {name!r}{where} for a Redis URL{hint}: Cache.from_url passes "
                "its extra keyword arguments to redis-py (see docs/configuration.md)"
            )
            raise ConfigurationError(msg)


def server_client(url: str, options: dict[str, Any]) -> Redis:
    """One server, through a blocking pool: callers wait for a free connection."""
    pool = BlockingConnectionPool.from_url(url, **{**_POOL_DEFAULTS, **_retried(options)})
    return Redis.from_pool(pool)


def _retried(options: dict[str, Any]) -> dict[str, Any]:
    """`options`, with a command retried once on a new connection when its own was closed.

    Redis's `timeout`, a load balancer, a NAT or a restart close idle connections; the
    pool learns of it only when a command fails on one. One retry, at once, on a fresh
    connection turns that into a hit; a timeout is not retried (a frozen server would
    cost every call twice the `socket_timeout`). An explicit `retry=` wins.
    """
    if "retry" in options:
        return options
    return {**options, "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))}


def cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    """A Redis Cluster client that starts from the URL's nodes."""
    parsed = _MultiHostUrl(url)
    if parsed.path:
        msg = (
            f"a cluster URL has no database or path, got {redacted(url)!r}: a Redis Cluster has "
            "only database 0; use redis+cluster://host1:port1,host2:port2"
        )
        raise ConfigurationError(msg)
    nodes = [ClusterNode(host, port) for host, port in parsed.hosts]
    if "retry" not in options and "cluster_error_retry_attempts" not in options:
        # redis-py retries a failed cluster command 10 times, for seconds; give up after
        # about half a second instead, so a dead master's keys fail open quickly.
        options = {**options, "retry": Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 3)}
    return RedisCluster(startup_nodes=nodes, **parsed.credentials, **options)


def sentinel_client(url: str, options: dict[str, Any]) -> tuple[Redis, list[Redis]]:
    """The client of the master the URL's Sentinels monitor, and the Sentinels' clients.

    The URL's user and password log in to the master and its replicas and, unless
    `sentinel_kwargs` says otherwise, to the Sentinels (`_sentinel_options`).
    """
    parsed = _MultiHostUrl(url)
    service, _, database = parsed.path.partition("/")
    if not service or (database and not database.isdigit()):
        msg = (
            f"a Sentinel URL names the monitored service, got {redacted(url)!r}: use "
            "redis+sentinel://host1:26379,host2:26379/service_name or .../service_name/0"
        )
        raise ConfigurationError(msg)
    given = options.get("sentinel_kwargs") or {}
    pool = {name: options.get(name, default) for name, default in _POOL_DEFAULTS.items()}
    connections = {
        name: value for name, value in options.items() if name not in (*pool, "sentinel_kwargs")
    }
    sentinel = ExplainedSentinel(  # type: ignore[no-untyped-call]
        parsed.hosts,
        sentinel_kwargs=_sentinel_options(parsed.credentials, options, given),
        **parsed.credentials,
        **connections,
    )
    master = sentinel.master_for(
        service,
        redis_class=Redis,
        connection_pool_class=BlockingSentinelConnectionPool,
        db=int(database or 0),
        **pool,
        **_retried({}) if "retry" not in connections else {},
    )
    return master, list(sentinel.sentinels)


def _sentinel_options(
    credentials: dict[str, Any], options: dict[str, Any], given: dict[str, Any]
) -> dict[str, Any]:
    """The options of each Sentinel's client: `given` (`sentinel_kwargs`) over ours.

    Ours are the URL's user and password (Sentinels protected with the data nodes'
    password, as Celery/Kombu and django-redis assume too), the connections' socket
    timeouts, and one quick retry (redis-py's default tries each Sentinel ten times,
    backing off for seconds, before it asks the next). TLS (`rediss+sentinel://`) is the
    master's only: `sentinel_kwargs={"ssl": True}` gives it to the Sentinels.
    """
    login: dict[str, Any] = {
        name: credentials[name] for name in ("username", "password") if name in credentials
    }
    timeouts = {name: options[name] for name in _TIMEOUTS if name in options}
    return _retried({**login, **timeouts, **given})


class _MultiHostUrl:
    """`scheme://[user[:password]@]host:port[,host:port...][/path]`, parsed strictly."""

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        if "?" in rest or "#" in rest:
            msg = (
                f"options in a cluster or Sentinel URL are not supported, got {redacted(url)!r}: "
                "pass them as keyword arguments, e.g. Cache.from_url(url, socket_timeout=1)"
            )
            raise ConfigurationError(msg)
        location, _, self.path = rest.partition("/")
        userinfo, _, netloc = location.rpartition("@")
        user, _, password = userinfo.partition(":")
        self.credentials: dict[str, Any] = {}
        if user:
            self.credentials["username"] = unquote(user)
        if password:
            self.credentials["password"] = unquote(password)
        if scheme.lower().startswith("rediss"):
            self.credentials["ssl"] = True
        self.hosts = [_host_and_port(part, url) for part in netloc.split(",")]


def url_of(client: RedisClient) -> str:
    """A URL of the server(s) `client` connects to, for messages: its password is `***`.

    Made from the client, so it serves for clients made elsewhere too; for one made
    from a URL, it is that URL without its options.
    """
    if isinstance(client, RedisCluster):
        nodes = client.startup_nodes
        tls = any(issubclass(node.connection_class, SSLConnection) for node in nodes)
        login = _login(nodes[0].connection_kwargs) if nodes else ""
        hosts = ",".join(_address(node.connection_kwargs) for node in nodes)
        return f"{'rediss' if tls else 'redis'}+cluster://{login}{hosts}"
    pool = client.connection_pool
    settings = pool.connection_kwargs
    login = _login(settings)
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    database = settings.get("db", 0)
    if isinstance(pool, SentinelConnectionPool):
        sentinels = pool.sentinel_manager.sentinels
        hosts = ",".join(
            _address(sentinel.connection_pool.connection_kwargs) for sentinel in sentinels
        )
        path = f"/{pool.service_name}" + (f"/{database}" if database else "")
        return f"{scheme}+sentinel://{login}{hosts}{path}"
    if "path" in settings:  # a unix socket
        return f"unix://{login}{settings['path']}?db={database}"
    return f"{scheme}://{login}{_address(settings)}/{database}"


def _login(settings: dict[str, Any]) -> str:
    """`user:***@`, `:***@`, `user@` or nothing: who logs in, and whether with a password."""
    user = settings.get("username") or ""
    password = ":***" if settings.get("password") else ""
    return f"{user}{password}@" if user or password else ""


def _address(settings: dict[str, Any]) -> str:
    """`host:port` of a connection's settings (`[host]:port` for an IPv6 address)."""
    host = str(settings.get("host", "localhost"))
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{settings.get('port', 6379)}"


#: Every client made here, whose connections a forked child forgets.
_CLIENTS: weakref.WeakSet[Redis | RedisCluster] = weakref.WeakSet()
#: The connections a forked child inherited, kept as they are: one that was garbage
#: collected would close its transport through the parent's event loop, whose epoll
#: instance the child shares, and the parent would stop hearing from that socket.
_INHERITED: list[object] = []


def _forget_parents_connections() -> None:
    """In a forked child: every client made here opens connections of its own.

    The parent's connections are set aside, never used nor closed here: their sockets
    and event loop are the parent's, which may go on using them.
    """
    for client in list(_CLIENTS):  # redis-py has no public way to take the connections
        if isinstance(client, RedisCluster):
            for node in client.get_nodes():
                _INHERITED.extend(node._connections)  # noqa: SLF001
                node._connections.clear()  # noqa: SLF001
                node._free.clear()  # noqa: SLF001
        else:
            pool = client.connection_pool
            _INHERITED.extend(pool._available_connections)  # noqa: SLF001
            _INHERITED.extend(pool._in_use_connections)  # noqa: SLF001
            pool.reset()  # type: ignore[no-untyped-call]


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_parents_connections)


def _host_and_port(text: str, url: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit():
        shown = f", got {text!r}" if "@" not in url else ""  # it may be part of a password
        msg = f"every host of {redacted(url)!r} needs a port, as in host:7000{shown}"
        raise ConfigurationError(msg)
    return host, int(port)
