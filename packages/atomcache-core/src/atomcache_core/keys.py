"""How a namespace and a user key become storage keys, unambiguously.

Layout: ``atomcache:<namespace>[@<version>]:<kind>:{<bucket>}<key>`` where

* ``<namespace>`` is percent-encoded (only ``A-Z a-z 0-9 _ . - ~`` stay as they are), so
  it never contains ``:``, ``@``, glob characters or braces, and ``app`` can never
  match ``app2`` or ``app:x``;
* ``@<version>`` is there for key versions other than 1 (impcache's and Django's
  ``version``: another version is another key); version 1 keys have none, so they are
  the keys of a cache without versions;
* ``<kind>`` is ``v`` (value), ``l`` (lock), ``t`` (tag set) or ``n`` (notification
  channel);
* ``{<bucket>}`` is a Redis Cluster hash tag: one of `HASH_TAG_BUCKETS` buckets, three
  hex digits computed from the key. It is the first ``{...}`` of the storage key, so
  braces inside the user's key never change it, and every key of one entry (value,
  lock, channel and the entry's tag sets) hashes to the same cluster slot: multi-key
  scripts never raise CROSSSLOT;
* ``<key>`` is ``=`` followed by the key itself, taken literally (glob characters,
  newlines, NUL and braces included), or ``#`` followed by the SHA-256 of the key when
  it is longer than `MAX_LITERAL_KEY_BYTES` bytes or is not valid UTF-8 text.

The two key forms cannot collide: the first character tells them apart.

A tag's bookkeeping is one set per bucket (``atomcache:<ns>:t:{<bucket>}=<tag>``), next
to the entries it lists; `KeyBuilder.tag_buckets` names all of them for invalidation.
Beside each set, its stamp (`stamp_key`: ``atomcache:<ns>:t:{<bucket>}!=<tag>``) holds the
time the tag was last invalidated in that bucket: an entry computed before it is a
miss, and so is an entry whose stamp is gone (evicted), so eviction never revives an
invalidated entry (docs/reliability.md).
One more channel per namespace, ``atomcache:<ns>:i``, carries the local tier's
invalidations, for every version.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import TYPE_CHECKING
from urllib.parse import quote

from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "HASH_TAG_BUCKETS",
    "KEY_PREFIX",
    "MAX_LITERAL_KEY_BYTES",
    "KeyBuilder",
    "escape_glob",
    "glob_matcher",
    "redacted",
    "stamp_key",
]

KEY_PREFIX = "atomcache"
MAX_LITERAL_KEY_BYTES = 200
HASH_TAG_BUCKETS = 1024
_HASH_TAGS = tuple(f"{{{bucket:03x}}}" for bucket in range(HASH_TAG_BUCKETS))


def _hash_tag(key: str) -> str:
    """The cluster hash tag of `key`'s bucket, such as ``{1f3}``."""
    return _HASH_TAGS[zlib.crc32(key.encode("utf-8", "surrogatepass")) % HASH_TAG_BUCKETS]


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

    __slots__ = ("_base", "_root", "namespace", "version")

    def __init__(self, namespace: str, version: int = 1) -> None:
        """Create the builder for `namespace`, keys of `version`.

        Raises:
            ConfigurationError: `namespace` is not a non-empty string, or `version` not a
                positive integer.
        """
        if not isinstance(namespace, str) or not namespace:
            msg = f"namespace must be a non-empty string, got {namespace!r}"
            raise ConfigurationError(msg)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            msg = f"version must be a positive integer (1 by default), got {version!r}"
            raise ConfigurationError(msg)
        self.namespace = namespace
        self.version = version
        self._root = f"{KEY_PREFIX}:{quote(namespace, safe='')}"  # every version's start
        suffix = "" if version == 1 else f"@{version}"
        self._base = f"{self._root}{suffix}:"

    def value(self, key: str) -> str:
        """Storage key of the entry for `key`."""
        return self._base + "v:" + _hash_tag(_checked(key)) + _encode_key(key)

    def lock(self, key: str) -> str:
        """Key of the single-flight lock for `key`."""
        return self._base + "l:" + _hash_tag(_checked(key)) + _encode_key(key)

    def channel(self, key: str) -> str:
        """Notification channel for `key`."""
        return self._base + "n:" + _hash_tag(_checked(key)) + _encode_key(key)

    def tags(self, tags: Iterable[str], key: str) -> tuple[str, ...]:
        """Keys of the sets that record the entry of `key` under each of `tags`.

        They share the entry's bucket, so one script can write the entry and its tags.
        """
        bucket = self.tag_bucket(key)
        return tuple(bucket + _encode_key(_checked(tag)) for tag in tags)

    def tag_bucket(self, key: str) -> str:
        """The literal prefix of the tag sets in `key`'s bucket (`tags` appends each tag)."""
        return self._base + "t:" + _hash_tag(_checked(key))

    def tag_buckets(self, tag: str) -> list[str]:
        """Keys of every bucket's set for `tag`: what invalidating the tag must empty."""
        encoded = _encode_key(_checked(tag))
        return [self._base + "t:" + hash_tag + encoded for hash_tag in _HASH_TAGS]

    @property
    def invalidations(self) -> str:
        """Channel on which writes announce the keys that local tiers must drop.

        One per namespace, whatever the version: instances of a fleet with different
        default versions (during a deploy) still hear each other's writes.
        """
        return self._root + ":i"

    @property
    def versions_prefix(self) -> str:
        """Literal prefix of the keys of this namespace's versions other than 1."""
        return self._root + "@"

    @property
    def value_prefix(self) -> str:
        """Literal prefix shared by every value key of the namespace."""
        return self._base + "v:"

    @property
    def tag_prefix(self) -> str:
        """Literal prefix shared by every tag key of the namespace (and their stamps)."""
        return self._base + "t:"

    @property
    def lock_prefix(self) -> str:
        """Literal prefix shared by every single-flight lock key of the namespace."""
        return self._base + "l:"


def stamp_key(tag_key: str) -> str:
    """The key of the stamp of the tag set `tag_key` (a key `KeyBuilder.tags` made).

    It shares the set's bucket (so its cluster slot) and its prefix (so `clear` takes
    it), and cannot be a set's key: those continue with ``=`` or ``#`` after the bucket.
    """
    bucket, brace, tag = tag_key.partition("}")
    return f"{bucket}{brace}!{tag}"


def _checked(key: object) -> str:
    if not isinstance(key, str):
        msg = f"cache keys are strings, got {type(key).__name__} {key!r}; convert it with str()"
        raise ConfigurationError(msg)
    return key


def escape_glob(text: str) -> str:
    """`text` as a Redis glob that matches it literally (`*`, `?`, `[`, `]`, backslash escaped)."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """Whether a key matches `pattern`, as Redis's `SCAN MATCH` and `KEYS` decide.

    Redis's glob (`stringmatchlen`): `*` any run of characters, `?` one character,
    `[abc]` one of a set, `[^abc]` one outside it, `[a-z]` a range, and a backslash
    taking the next character literally, inside brackets too. An unclosed `[` takes the rest
    of the pattern as its set, as Redis does.
    """
    parts: list[str] = []
    position, length = 0, len(pattern)
    while position < length:
        char = pattern[position]
        if char == "\\" and position + 1 < length:
            parts.append(re.escape(pattern[position + 1]))
            position += 2
        elif char == "*":
            parts.append(".*")
            position += 1
        elif char == "?":
            parts.append(".")
            position += 1
        elif char == "[":
            klass, position = _glob_class(pattern, position + 1)
            parts.append(klass)
        else:
            parts.append(re.escape(char))
            position += 1
    expression = re.compile("".join(parts), re.DOTALL)
    return lambda key: expression.fullmatch(key) is not None


def _glob_class(pattern: str, position: int) -> tuple[str, int]:
    """The regex of a `[...]` set starting after its `[`, and where the pattern goes on."""
    negated = position < len(pattern) and pattern[position] == "^"
    position += negated
    members: list[str] = []
    while position < len(pattern) and pattern[position] != "]":
        char = pattern[position]
        if char == "\\" and position + 1 < len(pattern):
            members.append(re.escape(pattern[position + 1]))
            position += 2
        elif position + 2 < len(pattern) and pattern[position + 1] == "-":
            # As in Redis, `x-]` is a range ending at `]` whenever a character follows
            # the dash: the `]` closes nothing there.
            low, high = sorted((char, pattern[position + 2]))
            members.append(f"{re.escape(low)}-{re.escape(high)}")
            position += 3
        else:
            members.append(re.escape(char))
            position += 1
    body = "".join(members)
    if not body:
        return ("(?!)" if not negated else "(?s:.)"), position + 1
    return f"[{'^' if negated else ''}{body}]", position + 1


def redacted(url: str) -> str:
    """`url` with its password replaced by `***` (a user name stays), for messages.

    Everything before the last `@` counts as credentials, so a malformed URL (a
    password holding an unencoded `/`) shows none of its password either.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    userinfo, _, after = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user.partition('/')[0]}{':***' if colon else ''}@{after}"
