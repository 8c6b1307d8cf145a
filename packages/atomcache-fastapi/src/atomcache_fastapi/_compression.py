"""Starlette's `GZipMiddleware` around the cache: validators and `Vary` per content coding.

The cache's middleware is the app's innermost, so compression runs outside it: an
entry holds the uncompressed bytes, and `GZipMiddleware` compresses them for each gzip
client, keeping the entry's `ETag`. RFC 9110 section 8.8.3 wants the gzip and the
identity representation to carry different strong validators, and a 304 to carry the
`Vary` of its 200 (RFC 9110 section 15.4.5); `GZipMiddleware` adds
`Vary: Accept-Encoding` only to the bodies it considers (not to a 304). So, for the
requests of cached routes of an app with `GZipMiddleware`:

- a request the middleware answers with gzip (its own test: `gzip` in
  `Accept-Encoding`) gets the entry's tag with `-gzip` inside the quotes
  (`"abc"` becomes `"abc-gzip"`), on 200s and 304s alike, compressed or not (a body
  below `minimum_size` stays as it is, under a tag of its own);
- its `If-None-Match` / `If-Match` are read with those tags mapped back (`"abc-gzip"`
  is `"abc"`; a tag without `-gzip` matches nothing: the client holds the identity
  representation);
- every response names `Accept-Encoding` in `Vary` once: where the middleware will
  not add it (304s, small bodies, excluded types), it is added here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.middleware.gzip import GZipMiddleware

from atomcache_core.http import get_header, parse_entity_tags, with_vary

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

__all__ = ["GZipAround"]

_CODING = "gzip"
_SUFFIX = "-" + _CODING
_CONDITIONS = (b"if-none-match", b"if-match")
_PARTIAL_CONTENT = 206


async def _no_app(
    scope: Scope, receive: Receive, send: Send
) -> None:  # pragma: no cover - never called
    del scope, receive, send


@dataclass(frozen=True, slots=True)
class GZipAround:
    """The app's `GZipMiddleware`, as it treats the responses of the cache.

    Attributes:
        minimum_size: Smaller complete bodies are sent as they are.
        excluded: Media types it never compresses (`audio/*` style wildcards).
    """

    minimum_size: int
    excluded: frozenset[str]

    @classmethod
    def of(cls, app: Any) -> GZipAround | None:
        """The `GZipMiddleware` among `app`'s middleware, or `None`.

        Read from a throwaway instance built with the app's own arguments, so its
        defaults are Starlette's, whatever the version.
        """
        for middleware in getattr(app, "user_middleware", ()):
            kind = getattr(middleware, "cls", None)
            if isinstance(kind, type) and issubclass(kind, GZipMiddleware):
                built = kind(_no_app, *middleware.args, **middleware.kwargs)
                excluded = getattr(built, "exclude_content_types", ())
                return cls(int(built.minimum_size), frozenset(excluded))
        return None

    def wrap(self, scope: Scope, send: Send) -> tuple[Scope, Send]:
        """The request as the cache should read it, and the `send` that codes its answer."""
        accept = get_header(scope.get("headers", ()), b"accept-encoding") or b""
        # GZipMiddleware leaves the empty body of a HEAD as it is: a HEAD gets the fields
        # of the identity representation, its ETag included.
        coded = _CODING.encode() in accept and scope.get("method") != "HEAD"
        if coded:
            headers = [
                (name, _mapped_back(value) if name.lower() in _CONDITIONS else value)
                for name, value in scope.get("headers", ())
            ]
            scope = {**scope, "headers": headers}
        start: Message | None = None

        async def coding(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if start is not None:
                body = message.get("body", b"") if message["type"] == "http.response.body" else b""
                more = message.get("more_body", False) or message["type"] != "http.response.body"
                await send(self._coded_start(start, body, more=more, coded=coded))
                start = None
            await send(message)

        return scope, coding

    def _coded_start(self, start: Message, body: bytes, *, more: bool, coded: bool) -> Message:
        """The response's start with its coded `ETag` and `Accept-Encoding` in `Vary`."""
        headers: list[tuple[bytes, bytes]] = [
            (bytes(name).lower(), bytes(value)) for name, value in start.get("headers", ())
        ]
        if coded:
            headers = [
                (name, _coded_tag(value) if name.lower() == b"etag" else value)
                for name, value in headers
            ]
        if not self._adds_vary(start["status"], headers, body, more=more):
            headers = with_vary(headers, b"Accept-Encoding")
        return {**start, "headers": headers}

    def _adds_vary(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, more: bool
    ) -> bool:
        """Whether `GZipMiddleware` will add `Vary: Accept-Encoding` to this response itself."""
        if status == _PARTIAL_CONTENT or get_header(headers, b"content-encoding") is not None:
            return False
        media_type = (get_header(headers, b"content-type") or b"").decode("latin-1")
        media_type = media_type.partition(";")[0].strip().lower()
        if {media_type, media_type.partition("/")[0] + "/*"} & self.excluded:
            return False
        return more or len(body) >= self.minimum_size


def _coded_tag(value: bytes) -> bytes:
    """`"abc"` as `"abc-gzip"` (`W/"abc"` as `W/"abc-gzip"`); anything else unchanged."""
    if len(value) >= 2 and value.endswith(b'"'):  # noqa: PLR2004 - two quotes
        return value[:-1] + _SUFFIX.encode() + b'"'
    return value


def _mapped_back(value: bytes) -> bytes:
    """A condition's tags as the entry knows them: `"abc-gzip"` is `"abc"`, others dropped."""
    tags = parse_entity_tags(value)
    if tags is None:  # `*`
        return value
    kept = [tag[: -len(_SUFFIX) - 1] + '"' for tag in tags if tag.endswith(_SUFFIX + '"')]
    return ", ".join(kept).encode("latin-1")
