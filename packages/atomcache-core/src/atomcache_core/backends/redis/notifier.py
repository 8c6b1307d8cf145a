"""`RedisNotifier`: events on Redis pub/sub, one subscriber connection per process (per node).

`_Channel` holds the local subscribers of one channel; `_Subscriber` one pub/sub
connection and the task that reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from redis.asyncio import RedisCluster
from redis.exceptions import RedisError

from atomcache_core._background import BackgroundTasks, start_over_after_fork, stop_tasks, within
from atomcache_core.backends._subscription import QueueSubscription
from atomcache_core.backends.redis.clients import (
    any_primary,
    check_client,
    node_client,
    pubsub_client,
)
from atomcache_core.backends.redis.errors import node_breaker, translate_errors
from atomcache_core.exceptions import AtomCacheError
from atomcache_core.protocols import EVENT_STATUSES, Event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import ClusterNode

    from atomcache_core.backends.redis.clients import RedisClient
    from atomcache_core.breaker import CircuitBreaker

__all__ = ["RedisNotifier"]


class _Channel:
    """The local subscribers of one Redis channel, and the connection it is subscribed on."""

    __slots__ = ("confirmed", "subscriber", "subscriptions")

    def __init__(self) -> None:
        self.subscriptions: set[QueueSubscription] = set()
        self.confirmed = asyncio.Event()
        self.subscriber: _Subscriber | None = None

    def deliver(self, event: Event) -> None:
        for subscription in self.subscriptions:
            subscription.deliver(event)


class _Subscriber:
    """One pub/sub connection (to the server, or to one cluster node) and its reader task."""

    __slots__ = ("__weakref__", "channels", "client", "lose", "name", "pubsub", "reader")

    def __init__(
        self,
        name: str,
        pubsub: PubSub,
        client: Redis | None,
        lose: Callable[[Iterable[str]], None],
    ) -> None:
        self.name = name
        self.pubsub = pubsub
        self.client = client  # the subscriber's own client, closed with it
        self.lose = lose
        self.channels: set[str] = set()
        self.reader: asyncio.Task[None] | None = None

    def reconnected(self, _connection: object) -> None:
        """redis-py re-established the connection and re-subscribed: events were lost."""
        self.lose(self.channels)

    async def close(self) -> None:
        if self.reader is not None and self.reader is not asyncio.current_task():
            await stop_tasks([self.reader])
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        if self.client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.client.aclose()


class RedisNotifier:
    """`Notifier` on Redis pub/sub, one shared subscriber connection per process.

    Every `subscribe(key)` in the process is multiplexed over a single pub/sub
    connection read by one background task: a key's channel is subscribed when its
    first local subscriber arrives and unsubscribed when its last one leaves.
    Entering `subscribe` waits for Redis to confirm the subscription (at most
    `confirm_timeout` seconds), so a read made afterwards cannot miss an event.

    On Redis Cluster the events use sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7
    and later, also Valkey) so each event stays on the shard that owns the key, with
    one subscriber connection per node holding subscribed channels; `sharded=False`
    (or a server older than 7) uses classic pub/sub on one node instead.

    If a connection drops, it is re-established (on a cluster: on the node that owns
    the channel now) and its channels re-subscribed. Events published meanwhile are
    lost, so every subscriber of those channels receives a local `"lost"` event and
    re-checks at once; waiters also re-check on their own interval.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        owns_client: bool = False,
        confirm_timeout: float = 1.0,
        breaker: CircuitBreaker | None = None,
        sharded: bool | None = None,
    ) -> None:
        """Use `client` for publishing and for the shared subscriber connection(s).

        `sharded`: use sharded pub/sub; `None` (default) decides by itself: on a
        cluster whose servers support it.
        """
        self._client = check_client(client)
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._sharded = sharded if self._cluster is not None else False
        self._owns_client = owns_client
        self._breaker = breaker
        self._confirm_timeout = confirm_timeout
        self._subscribers: dict[str, _Subscriber] = {}
        self._start_lock = asyncio.Lock()
        self._channels: dict[str, _Channel] = {}
        self._repairs = BackgroundTasks()
        start_over_after_fork(self)

    async def publish(self, key: str, event: Event) -> None:
        """Publish `event` on the channel `key`."""
        payload = f"{event.status}:{event.version}"
        if self._cluster is not None and await self._is_sharded():
            with translate_errors(
                "SPUBLISH", self._client, node_breaker(self._cluster, self._breaker, key)
            ):
                await self._cluster.spublish(key, payload)
            return
        with translate_errors("PUBLISH", self._client, self._breaker):
            await self._client.publish(key, payload)

    @asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[QueueSubscription]:
        """Receive events on `key` while the block runs; active once entered."""
        subscription = QueueSubscription()
        channel = self._channels.get(key)
        is_new = channel is None
        if channel is None:
            channel = self._channels[key] = _Channel()
        channel.subscriptions.add(subscription)
        try:
            if is_new:
                await self._attach(key, channel)
            await within(channel.confirmed.wait(), self._confirm_timeout)
            yield subscription
        finally:
            channel.subscriptions.discard(subscription)
            if not channel.subscriptions and self._channels.get(key) is channel:
                del self._channels[key]
                await self._detach(key, channel)

    async def close(self) -> None:
        """Stop the readers, close the subscriber connections and, if owned, the client."""
        await self._repairs.close()
        subscribers, self._subscribers = list(self._subscribers.values()), {}
        for subscriber in subscribers:
            await subscriber.close()
        self._channels.clear()
        if self._owns_client:
            with translate_errors("close", self._client):
                await self._client.aclose()

    @property
    def subscribed_channels(self) -> int:
        """Number of channels this process listens to now."""
        return len(self._channels)

    async def _is_sharded(self) -> bool:
        """Whether events use sharded pub/sub: asked of the server once."""
        if self._sharded is None:
            with translate_errors("INFO server", self._client, self._breaker):
                info = await self._client.info("server")
            self._sharded = _version(info.get("redis_version")) >= (7, 0)
        return self._sharded

    def _connection_breaker(self, name: str) -> CircuitBreaker | None:
        """The breaker of a subscriber connection: its node's on a cluster."""
        if self._breaker is None or not name:
            return self._breaker
        return self._breaker.for_node(name)

    async def _attach(self, key: str, channel: _Channel) -> None:
        """Subscribe `key` on the connection that serves it."""
        subscriber = await self._subscriber_for(key)
        channel.subscriber = subscriber
        subscriber.channels.add(key)
        sharded = self._cluster is not None and await self._is_sharded()
        breaker = self._connection_breaker(subscriber.name)
        with translate_errors("SSUBSCRIBE" if sharded else "SUBSCRIBE", self._client, breaker):
            if sharded:
                await subscriber.pubsub.ssubscribe(key)
            else:
                await subscriber.pubsub.subscribe(key)

    async def _detach(self, key: str, channel: _Channel) -> None:
        subscriber = channel.subscriber
        if subscriber is None or self._subscribers.get(subscriber.name) is not subscriber:
            return
        subscriber.channels.discard(key)
        with contextlib.suppress(RedisError, OSError):
            if self._cluster is not None and await self._is_sharded():
                await subscriber.pubsub.sunsubscribe(key)
            else:
                await subscriber.pubsub.unsubscribe(key)

    async def _subscriber_for(self, key: str) -> _Subscriber:
        """The connection for `key`'s channel, connected, with its reader running."""
        node: ClusterNode | None = None
        if self._cluster is not None:
            sharded = await self._is_sharded()
            node = self._cluster.get_node_from_key(key) if sharded else any_primary(self._cluster)
        name = node.name if node is not None else ""
        subscriber = self._subscribers.get(name)
        if subscriber is not None:
            return subscriber
        async with self._start_lock:
            subscriber = self._subscribers.get(name)
            if subscriber is None:
                subscriber = await self._connect(name, node)
                self._subscribers[name] = subscriber
        return subscriber

    async def _connect(self, name: str, node: ClusterNode | None) -> _Subscriber:
        # Not a cluster when there is no node: self._client is a Redis client.
        client = node_client(node) if node is not None else pubsub_client(self._client)  # type: ignore[arg-type]
        pubsub = client.pubsub()
        subscriber = _Subscriber(name, pubsub, client, self._lose)
        try:
            with translate_errors(
                "connect (pub/sub)", self._client, self._connection_breaker(name)
            ):
                await pubsub.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await subscriber.close()
            raise
        # redis-py reconnects a dropped connection by itself and re-subscribes its
        # channels: events published in between are lost, so say so.
        connection: Any = pubsub.connection
        connection.register_connect_callback(subscriber.reconnected)
        subscriber.reader = asyncio.create_task(self._read(subscriber), name="atomcache-notifier")
        return subscriber

    async def _read(self, subscriber: _Subscriber) -> None:
        """Dispatch messages from one connection until it is closed."""
        backoff = 0.05
        while True:
            try:
                message = await subscriber.pubsub.get_message(timeout=None)
            except (RedisError, OSError):
                # The connection dropped and redis-py's retries gave up: Redis is away.
                self._lose(subscriber.channels)
                if self._cluster is not None:
                    # A node's subscriber: re-subscribe its channels where they live now.
                    self._start_repair(subscriber)
                    return
                # The next read reconnects and re-subscribes; waiters re-check meanwhile.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if message is not None:
                self._dispatch(subscriber, message)

    def _dispatch(self, subscriber: _Subscriber, message: dict[str, Any]) -> None:
        raw_channel = message.get("channel")
        if not isinstance(raw_channel, bytes):
            return
        key = raw_channel.decode(errors="replace")
        channel = self._channels.get(key)
        if channel is None:
            return
        kind = message.get("type")
        if kind in ("message", "smessage"):
            event = _parse_event(key, message.get("data"))
            if event is not None:
                channel.deliver(event)
        elif kind in ("subscribe", "ssubscribe"):
            channel.confirmed.set()
        elif kind == "sunsubscribe" and key in subscriber.channels:
            # The server dropped the subscription: the key's slot moved to another node.
            subscriber.channels.discard(key)
            channel.deliver(Event(key, "lost"))
            self._start_repair(None, [key])

    def _lose(self, keys: Iterable[str]) -> None:
        """Tell the subscribers of `keys` that events may have been missed."""
        for key in keys:
            channel = self._channels.get(key)
            if channel is not None:
                channel.deliver(Event(key, "lost"))

    def _start_repair(self, broken: _Subscriber | None, keys: Iterable[str] = ()) -> None:
        self._repairs.start(self._repair(broken, [*keys]), name="atomcache-resubscribe")

    async def _repair(self, broken: _Subscriber | None, keys: list[str]) -> None:
        """Re-subscribe channels of a lost cluster connection where their slots live now."""
        if broken is not None:
            if self._subscribers.get(broken.name) is broken:
                del self._subscribers[broken.name]
            keys.extend(broken.channels)
            await broken.close()
        backoff = 0.05
        while not await self._resubscribe(keys):
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _resubscribe(self, keys: list[str]) -> bool:
        """Refresh the slot map and subscribe `keys` again; `False` to try again later."""
        cluster = self._cluster
        try:
            if cluster is not None:
                with translate_errors("refresh cluster slots", self._client, self._breaker):
                    await cluster.nodes_manager.initialize()
            while keys:
                channel = self._channels.get(keys[-1])
                if channel is not None:
                    channel.confirmed.clear()
                    await self._attach(keys[-1], channel)
                    channel.deliver(Event(keys[-1], "lost"))
                keys.pop()
        except (AtomCacheError, RedisError, OSError):
            return False
        return True

    def start_over(self) -> object:
        """Start over in a forked child: no subscriber, no channel, no repair under way.

        The parent's subscriber connections and reader tasks run on its sockets and event
        loop: reused here, nothing would ever be delivered (no reader runs in the child),
        and the child's local tier would never serve. The child subscribes again on
        connections of its own. The parent's are set aside untouched: one garbage
        collected here would close its transport through the parent's event loop, whose
        epoll instance the child shares, and the parent would stop hearing from it.
        """
        inherited = (self._subscribers, self._channels, self._repairs)
        self._subscribers = {}
        self._channels = {}
        self._repairs = BackgroundTasks()
        self._start_lock = asyncio.Lock()
        return inherited


def _version(text: object) -> tuple[int, ...]:
    """`"7.0.15"` as `(7, 0, 15)`; `()` when unknown."""
    parts = str(text or "").split(".")
    return tuple(int(part) for part in parts if part.isdigit())


def _parse_event(key: str, data: object) -> Event | None:
    if not isinstance(data, bytes):
        return None
    status, _, version = data.decode(errors="replace").partition(":")
    if status not in EVENT_STATUSES or status == "lost":
        return None
    return Event(key, status, version)  # type: ignore[arg-type] # checked just above
