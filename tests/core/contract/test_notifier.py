"""The `Notifier` contract, run against every implementation."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from atomcache_core import Event, Notifier

if TYPE_CHECKING:
    from support.backends import Backends


async def test_implements_the_protocol(backends: Backends) -> None:
    """Each notifier satisfies the `Notifier` Protocol."""
    assert isinstance(backends.notifier, Notifier)


async def test_subscriber_receives_the_event(backends: Backends) -> None:
    """An event published after subscribing reaches the subscriber, key and all."""
    channel = backends.keys.channel("k")
    async with backends.notifier.subscribe(channel) as subscription:
        await backends.notifier.publish(channel, Event(channel, "stored", "v1"))
        assert await subscription.wait(5) == Event(channel, "stored", "v1")


async def test_failed_events_are_delivered_too(backends: Backends) -> None:
    """The "failed" status travels like "stored"."""
    channel = backends.keys.channel("k")
    async with backends.notifier.subscribe(channel) as subscription:
        await backends.notifier.publish(channel, Event(channel, "failed", "v2"))
        event = await subscription.wait(5)
    assert event is not None
    assert event.status == "failed"


async def test_wait_times_out_with_none(backends: Backends) -> None:
    """With nothing published, wait returns None after its timeout."""
    async with backends.notifier.subscribe(backends.keys.channel("k")) as subscription:
        started = time.monotonic()
        assert await subscription.wait(0.1) is None
    assert 0.09 <= time.monotonic() - started < 1.0


async def test_events_go_only_to_their_key(backends: Backends) -> None:
    """A subscriber of one key does not see another key's events."""
    mine, other = backends.keys.channel("mine"), backends.keys.channel("other")
    async with backends.notifier.subscribe(mine) as subscription:
        await backends.notifier.publish(other, Event(other, "stored"))
        await backends.notifier.publish(mine, Event(mine, "stored", "last"))
        event = await subscription.wait(5)
    assert event == Event(mine, "stored", "last")


async def test_every_subscriber_of_a_key_is_woken(backends: Backends) -> None:
    """Several subscribers of one key in one process all get the event."""
    channel = backends.keys.channel("k")
    async with (
        backends.notifier.subscribe(channel) as first,
        backends.notifier.subscribe(channel) as second,
    ):
        await backends.notifier.publish(channel, Event(channel, "stored"))
        assert await first.wait(5) is not None
        assert await second.wait(5) is not None


async def test_events_after_leaving_are_not_kept(backends: Backends) -> None:
    """A new subscription does not receive events published before it began."""
    channel = backends.keys.channel("k")
    async with backends.notifier.subscribe(channel):
        pass
    await backends.notifier.publish(channel, Event(channel, "stored", "early"))
    async with backends.notifier.subscribe(channel) as subscription:
        assert await subscription.wait(0.1) is None
