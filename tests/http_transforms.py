"""HTTP behaviours around the handler, written once and run against every adapter.

Each scenario takes a client of a small app that the adapter's test module builds
(`tests/fastapi/test_fastapi_transforms.py`, `tests/litestar/test_litestar_transforms.py`)
and the counter its handlers count their calls in. The docstring of each scenario
lists the routes its app has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atomcache_core.http import parse_cache_control

if TYPE_CHECKING:
    from collections import Counter

    import httpx

#: The request fields that let a request past the checks of these apps.
VALID_SESSION = {"cookie": "session=valid"}
STAFF = {"x-staff": "yes"}


def status_of(response: httpx.Response) -> str:
    """The response's `Cache-Status`, or an empty string."""
    return str(response.headers.get("cache-status", ""))


async def method_handlers_are_ordinary_routes(
    client: httpx.AsyncClient, calls: Counter[str]
) -> None:
    """A handler that is a method (a Litestar `Controller`'s, a class-based view's) is a route.

    Routes: `GET /methods/open` and `/methods/open-sync` (async and sync methods, no
    check) and `GET /methods/guarded` (`public=True`, behind a check refusing requests
    without `Cookie: session=valid`), counted as "open", "open-sync", "guarded".
    Without checks, hits are answered as any unchecked route's (no `private`); with a
    check, the check runs on hits.
    """
    for path, name in (("/methods/open", "open"), ("/methods/open-sync", "open-sync")):
        first = await client.get(path)
        assert first.status_code == 200, first.text
        hit = await client.get(path)
        assert status_of(hit).startswith("atomcache; hit"), path
        assert set(parse_cache_control(hit.headers["cache-control"])) == {"max-age"}, path
        assert calls[name] == 1, path
    assert (await client.get("/methods/guarded", headers=VALID_SESSION)).status_code == 200
    hit = await client.get("/methods/guarded", headers=VALID_SESSION)
    assert status_of(hit).startswith("atomcache; hit")
    assert (await client.get("/methods/guarded")).status_code == 401
    assert calls["guarded"] == 1


async def middleware_added_after_the_cache_runs_on_hits(
    client: httpx.AsyncClient, calls: Counter[str]
) -> None:
    """Middleware the app adds after the cache runs on hits as on misses (HTTP.md 0.3).

    Routes: `GET /later` (no check of its own), counted as "later". The app adds, after
    the cache (a plugin listed after the cache's, `add_middleware` after
    `setup_cache`), a middleware refusing requests without `X-Staff: yes` with 403, and
    one copying the request's `X-Trace` into the response's `X-Stamp`.
    """
    first = await client.get("/later", headers={**STAFF, "x-trace": "one"})
    assert first.status_code == 200
    assert first.headers["x-stamp"] == "one"
    hit = await client.get("/later", headers={**STAFF, "x-trace": "two"})
    assert status_of(hit).startswith("atomcache; hit")
    assert hit.headers["x-stamp"] == "two"
    refused = await client.get("/later", headers={"x-trace": "three"})
    assert refused.status_code == 403
    revalidated = await client.get(
        "/later", headers={**STAFF, "x-trace": "four", "if-none-match": first.headers["etag"]}
    )
    assert revalidated.status_code == 304
    assert revalidated.headers["x-stamp"] == "four"
    assert calls["later"] == 1


def vary_names(response: httpx.Response) -> list[str]:
    """The field names of the response's `Vary`, lower-case, as many times as sent."""
    values = response.headers.get_list("vary")
    return [name.strip().lower() for value in values for name in value.split(",") if name.strip()]


async def each_content_coding_has_its_validator(
    client: httpx.AsyncClient, calls: Counter[str]
) -> None:
    """Compression around the cache gives each coding its ETag, and Vary says so (HTTP.md 0.3).

    Routes: `GET /text` (2,000 bytes of text, compressed for gzip clients) and
    `GET /small` (10 bytes, never compressed), counted as "text" and "small", in an app
    with gzip compression (minimum size 500 bytes). RFC 9110 section 8.8.3: the gzip
    and identity representations carry different strong ETags (the uncompressed small
    body may keep one, or not); every response, 304s
    included, names `Accept-Encoding` in `Vary` once, and a 304 carries the ETag and
    `Vary` of the 200 it stands for. An identity request that comes first does not keep
    gzip clients from getting gzip.
    """
    identity = {"accept-encoding": "identity"}
    gzip = {"accept-encoding": "gzip, deflate"}
    for path, size in (("/text", 2000), ("/small", 10)):
        plain = await client.get(path, headers=identity)
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        zipped = await client.get(path, headers=gzip)
        assert len(zipped.content) == size
        assert zipped.headers.get("content-encoding") == ("gzip" if size >= 500 else None)
        if size >= 500:  # two representations: two strong validators
            assert plain.headers["etag"] != zipped.headers["etag"], path
        for headers in (identity, gzip):  # where learning a field re-keys the route
            await client.get(path, headers=headers)
        for headers, first in ((identity, plain), (gzip, zipped)):
            again = await client.get(path, headers=headers)
            assert status_of(again).startswith("atomcache; hit"), (path, headers)
            assert again.headers["etag"] == first.headers["etag"]
            assert again.headers.get("content-encoding") == first.headers.get("content-encoding")
            assert again.content == first.content
            etag = first.headers["etag"]
            for response in (first, again):
                assert vary_names(response).count("accept-encoding") == 1, (path, headers)
            not_modified = await client.get(path, headers={**headers, "if-none-match": etag})
            assert not_modified.status_code == 304, (path, headers)
            assert not_modified.headers["etag"] == etag
            assert vary_names(not_modified) == vary_names(first)
        crossed = await client.get(path, headers={**gzip, "if-none-match": plain.headers["etag"]})
        if size >= 500:  # the client holds the identity bytes: it gets the gzip ones
            assert crossed.status_code == 200, path
        assert crossed.headers["etag"] == zipped.headers["etag"]
        head = await client.head(path, headers=gzip)  # the fields of one representation
        named = zipped if head.headers.get("content-encoding") else plain
        assert head.headers["etag"] == named.headers["etag"], path
        assert head.headers["content-length"] == named.headers["content-length"], path
    assert calls["text"] <= 3
    assert calls["small"] <= 3
