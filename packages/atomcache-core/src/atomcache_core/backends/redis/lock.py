"""`RedisLockBackend`: the lock of a computation, its token fencing the write that ends it."""

from __future__ import annotations

import asyncio
import functools
import secrets
from typing import TYPE_CHECKING

from redis.asyncio import RedisCluster

from atomcache_core._background import BackgroundTasks, keep_trying, start_over_after_fork
from atomcache_core.backends.redis.batches import in_batches
from atomcache_core.backends.redis.clients import as_bytes, as_milliseconds, check_client
from atomcache_core.backends.redis.errors import node_breaker, translate_errors
from atomcache_core.backends.redis.scripts import ACQUIRE, EXTEND, RELEASE, REVOKE
from atomcache_core.exceptions import BackendUnavailableError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from atomcache_core.backends.redis.clients import RedisClient
    from atomcache_core.breaker import CircuitBreaker

__all__ = ["RedisLockBackend"]


class RedisLockBackend:
    """`LockBackend` on Redis: `SET NX PX` with a random token in a script, Lua compare-and-delete.

    A token is 32 random hex digits, a colon, and the server's time when the lock was
    taken, in microseconds: the time `RedisStorage.set_if_locked` compares with the
    invalidations that came since.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        owns_client: bool = False,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Use `client` (closed on `close()` only if `owns_client`), behind `breaker`."""
        self._client = check_client(client)
        self._owns_client = owns_client
        self._breaker = breaker
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._extend = client.register_script(EXTEND)
        self._revoke = client.register_script(REVOKE)
        self._cleanups = BackgroundTasks()
        start_over_after_fork(self)

    def start_over(self) -> object:
        """Start over in a forked child: the parent's lock clean-ups are its own."""
        inherited, self._cleanups = self._cleanups, BackgroundTasks()
        return inherited

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Take the lock for `ttl` seconds; `None` if another owner holds it."""
        nonce = secrets.token_hex(16)
        try:
            with translate_errors("SET NX (lock)", self._client, self._breaker_for(key)):
                token = await self._acquire(keys=[key], args=[nonce, as_milliseconds(ttl)])
        except BackendUnavailableError:
            # Redis may have taken the lock and lost only its answer: nobody would know
            # the token, and the key would be locked until the lock expires.
            release = functools.partial(self._release_nonce, key, nonce)  # only this call's lock
            self._cleanups.start(keep_trying(release, ttl), name="atomcache-release")
            raise
        return None if token is None else as_bytes(token).decode()  # type: ignore[union-attr]

    def _breaker_for(self, key: str) -> CircuitBreaker | None:
        return node_breaker(self._cluster, self._breaker, key)

    async def _release_nonce(self, key: str, nonce: str) -> bool:
        """Release the lock if a token of `nonce` holds it (its answer was lost)."""
        with translate_errors("release lock", self._client, self._breaker_for(key)):
            released: int = await self._release(keys=[key], args=[nonce, "prefix"])
        return released == 1

    async def release(self, key: str, token: str) -> bool:
        """Delete the lock only if `token` still owns it (revoked or not)."""
        with translate_errors("release lock", self._client, self._breaker_for(key)):
            released: int = await self._release(keys=[key], args=[token, ""])
        return released == 1

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        """Reset the lock's expiry only if `token` still owns it (revoked or not)."""
        milliseconds = as_milliseconds(ttl)
        with translate_errors("extend lock", self._client, self._breaker_for(key)):
            extended: int = await self._extend(keys=[key], args=[token, "", milliseconds])
        return extended == 1

    async def revoke(self, keys: Sequence[str]) -> int:
        """Revoke the computations holding these locks (see `LockBackend.revoke`)."""
        with translate_errors("revoke locks", self._client, self._breaker):
            return await self._revoke_keys(keys)

    async def _revoke_keys(self, keys: Sequence[str | bytes]) -> int:
        if not keys:
            return 0
        if self._cluster is None:
            revoked: int = await self._revoke(keys=list(keys))
            return revoked
        counts = await asyncio.gather(*(self._revoke(keys=[key]) for key in keys))
        return sum(counts)

    async def revoke_matching(self, pattern: str) -> int:
        """Revoke every lock whose key matches the glob `pattern`, found with `SCAN`."""
        with translate_errors("SCAN (locks)", self._client, self._breaker):
            return await in_batches(self._client, pattern, self._revoke_keys)

    async def close(self) -> None:
        """Stop the clean-ups; close the client if this object owns it."""
        await self._cleanups.close()
        if self._owns_client:
            with translate_errors("close", self._client):
                await self._client.aclose()
