"""The Lua scripts of the Redis backends, read once, at import, from this package's `.lua` files.

Two files hold functions that scripts begin with: `wrap.lua` (`unwrap` and `live`, the
stored form of a value that `storage._Wrapped` reads too, and `now`, the server's
clock) and `owns.lua` (whether a token owns a lock). A script is its files joined, each
after a newline: the bytes, and so the SHA1 that `EVALSHA` names, are those the
scripts had when they were string constants, so old and new processes on one Redis
share the scripts the server has loaded.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["ACQUIRE", "EXTEND", "INVALIDATE_TAGS", "RELEASE", "REVOKE", "SET", "TRACK"]


def _script(*names: str) -> str:
    """The `.lua` files `names` of this package joined, each after a newline."""
    folder = files(__name__.rpartition(".")[0])
    return "".join("\n" + folder.joinpath(f"{name}.lua").read_text("utf-8") for name in names)


SET = _script("wrap", "set")
"""Stores a value, wrapped with its tags' stamps; fenced by a lock when given its token.

KEYS: value key, lock key (the value key again when unfenced), n tag keys, their n
stamp keys. ARGV: value, ttl in milliseconds, lock token ("" when unfenced), "nx" to
store only where nothing live is (optional). Returns 1 when it stored; 0 when another
owner holds the lock; 2 when it was invalidated or a newer value was stored since the
computation began (the lock's time, carried by its token).
"""

TRACK = _script("wrap", "track")
"""Makes the stamps a computation begun at the token's time will write.

KEYS: stamp keys. ARGV: lock token, ttl in milliseconds. An invalidation meanwhile
finds them (it only moves stamps that exist).
"""

INVALIDATE_TAGS = _script("wrap", "invalidate_tags")
"""Removes the entries of tag sets and the sets, then moves every existing stamp to now.

KEYS: n tag keys, their n stamp keys. Entries the sets no longer list (such as those
whose set was evicted) and computations under way are refused by the moved stamps.
Removing first matters under `noeviction` with a full memory: a script that has
written may go on writing; a stamp that cannot be moved is deleted instead.
"""

ACQUIRE = _script("wrap", "acquire")
"""Takes the lock unless it is held; returns the token, or nothing.

The token is ARGV[1] and the server's time in microseconds (when the computation
begins, for `SET`). Also succeeds when the lock already holds a token of ARGV[1]: the
client retried a call whose answer was lost.
"""

# The owner of a lock is its token, revoked (`REVOKE`: "!" appended) or not. ARGV[2]
# "prefix": any token that begins with ARGV[1] (a call whose answer was lost).
RELEASE = _script("owns", "release")
"""Deletes the lock if its owner is ARGV[1] (`owns.lua`); returns how many it deleted."""

EXTEND = _script("owns", "extend")
"""Sets the lock's expiry to ARGV[3] milliseconds if its owner is ARGV[1] (`owns.lua`)."""

REVOKE = _script("revoke")
"""Marks the computations holding these locks as revoked; returns how many it marked.

They keep the lock, but their fenced write (`SET`) stores nothing.
"""
