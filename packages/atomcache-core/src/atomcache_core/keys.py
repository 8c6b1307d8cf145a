"""How a namespace and a user key become storage keys, unambiguously.

Layout: ``atomcache:<namespace>:<kind>:<key>`` where

* ``<namespace>`` is percent-encoded (only ``A-Z a-z 0-9 _ . - ~`` stay as they are), so
  it never contains ``:``, glob characters or braces, and ``app`` can never match
  ``app2`` or ``app:x``;
* ``<kind>`` is ``v`` (value), ``l`` (lock), ``t`` (tag set) or ``n`` (notification
  channel);
* ``<key>`` is ``=`` followed by the key itself, taken literally (glob characters,
  newlines, NUL and braces included), or ``#`` followed by the SHA-256 of the key when
  it is longer than `MAX_LITERAL_KEY_BYTES` bytes or is not valid UTF-8 text.

The two key forms cannot collide: the first character tells them apart.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

from atomcache_core.exceptions import ConfigurationError

__all__ = ["KEY_PREFIX", "MAX_LITERAL_KEY_BYTES", "KeyBuilder"]

KEY_PREFIX = "atomcache"
MAX_LITERAL_KEY_BYTES = 200


def _encode_key(key: str) -> str:
    """The key part: literal when short and encodable, else its SHA-256."""
    if len(key) <= MAX_LITERAL_KEY_BYTES and _utf8_length(key) <= MAX_LITERAL_KEY_BYTES:
        return "=" + key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return "#" + digest


def _utf8_length(key: str) -> int:
    """Length of the key in UTF-8 bytes; past the limit when it has lone surrogates."""
    try:
        return len(key.encode())
    except UnicodeEncodeError:
        return MAX_LITERAL_KEY_BYTES + 1


class KeyBuilder:
    """Builds the storage keys of one namespace."""

    __slots__ = ("_base", "namespace")

    def __init__(self, namespace: str) -> None:
        """Create the builder for `namespace`.

        Raises:
            ConfigurationError: `namespace` is not a non-empty string.
        """
        if not isinstance(namespace, str) or not namespace:
            msg = f"namespace must be a non-empty string, got {namespace!r}"
            raise ConfigurationError(msg)
        self.namespace = namespace
        self._base = f"{KEY_PREFIX}:{quote(namespace, safe='')}:"

    def value(self, key: str) -> str:
        """Storage key of the entry for `key`."""
        return self._base + "v:" + _encode_key(_checked(key))

    def lock(self, key: str) -> str:
        """Key of the single-flight lock for `key`."""
        return self._base + "l:" + _encode_key(_checked(key))

    def channel(self, key: str) -> str:
        """Notification channel for `key`."""
        return self._base + "n:" + _encode_key(_checked(key))

    def tag(self, tag: str) -> str:
        """Key of the set that records which entries carry `tag`."""
        return self._base + "t:" + _encode_key(_checked(tag))

    @property
    def value_prefix(self) -> str:
        """Literal prefix shared by every value key of the namespace."""
        return self._base + "v:"

    @property
    def tag_prefix(self) -> str:
        """Literal prefix shared by every tag key of the namespace."""
        return self._base + "t:"


def _checked(key: object) -> str:
    if not isinstance(key, str):
        msg = f"cache keys are strings, got {type(key).__name__} {key!r}; convert it with str()"
        raise ConfigurationError(msg)
    return key
