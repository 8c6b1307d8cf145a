"""Errors raised by atomcache.

Every error derives from `AtomCacheError`, so one `except AtomCacheError` catches them
all. Messages say what failed, show the offending value and how to fix it.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AtomCacheError",
    "BackendAuthenticationError",
    "BackendError",
    "BackendUnavailableError",
    "ConfigurationError",
    "LockError",
    "LockTimeoutError",
    "SerializationError",
]


class AtomCacheError(Exception):
    """Root of every error atomcache raises."""


class ConfigurationError(AtomCacheError, ValueError):
    """A setting or argument is invalid (bad URL, negative TTL, unknown option)."""


class BackendError(AtomCacheError):
    """The storage server answered with an error (wrong type, script error, ACL denial)."""


class BackendUnavailableError(BackendError):
    """The storage server could not be reached in time (refused, reset, timed out)."""


class BackendAuthenticationError(BackendUnavailableError):
    """The storage server refused the credentials: wrong password or user, or none given.

    A kind of `BackendUnavailableError`: the server cannot be used until the
    credentials are fixed, so the cache fails open and keeps invalidations to replay
    as when it is away. The message names the server's URL (password redacted) and
    what the server said, never the password.
    """


class LockError(AtomCacheError):
    """A single-flight lock could not be used as expected."""


class LockTimeoutError(LockError, TimeoutError):
    """A waiter gave up on another process's computation after its wait deadline."""


class SerializationError(AtomCacheError, TypeError):
    """A value could not be turned into bytes, or bytes back into a value.

    Attributes:
        value_type: Name of the type that failed (for `dumps`) or `"bytes"` (for `loads`).
        direction: `"dumps"` when storing, `"loads"` when reading.
    """

    def __init__(
        self, message: str, *, value_type: str, direction: Literal["dumps", "loads"]
    ) -> None:
        """Create the error with the type and direction that failed."""
        super().__init__(message)
        self.value_type = value_type
        self.direction = direction
