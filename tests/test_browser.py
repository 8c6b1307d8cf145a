"""Headless Chromium against the example apps, each served by uvicorn in its own process.

The browser loads `GET /products` of examples/fastapi_example.py and
examples/litestar_example.py. The server is the witness: `support.recorder` journals
the headers of every request with the status of its response, and each run of the
handler (the examples log "computing products A..B" when it runs).

What "the second load" is: the cached route answers with `Cache-Control:
max-age=<remaining TTL>` (about 60 s), so the browser may reuse its copy without asking,
and does: opening the address again sends no request at all (checked below). The load
that revalidates is a reload, which asks with `If-None-Match` (and `Cache-Control:
max-age=0`) and shows the cached body on `304`. With the default `no_cache="honour"`,
`max-age=0` counts as `no-cache` (HTTP.md 13): within `min_refresh_interval` (1 s) of
the computation the stored entry answers, later a recomputation does; the body, hence
the ETag, is the same, so the answer is `304` either way. A hard reload (Ctrl+Shift+R;
here DevTools' `Page.reload` with `ignoreCache`) sends `Cache-Control: no-cache` and no
validator: once the 1 s window has passed, the handler runs exactly once more.

Chromium and chromedriver are Debian's (`apt-get install chromium chromium-driver`, run
by the fixture when they are missing); the tests are skipped, saying why, only where
they cannot be installed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from support.browser import Browser, Exchange, Journal, chromium, install_chromium
from support.servers import uvicorn_processes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

TESTS = Path(__file__).parent
EXAMPLES = TESTS.parent / "examples"
MIN_REFRESH_INTERVAL = 1.0  # the examples' routes keep `cached`'s default

pytestmark = [
    # One event loop for the module, so that one server per app serves both tests.
    pytest.mark.asyncio(loop_scope="module"),
    # The body is bounded; fixtures bound their own waits (the first may install Chromium).
    pytest.mark.timeout(60, func_only=True),
]


@dataclass(frozen=True)
class Served:
    """An example app behind a real server, and the journal of what that server saw."""

    base_url: str
    journal: Journal

    def exchanges(self, query: str) -> list[Exchange]:
        """The responses to `GET /products?<query>` so far."""
        return self.journal.exchanges("/products", query)


@pytest.fixture(scope="module")
def shared_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless Chromium, installed first if need be; skipped, saying why, if it cannot be."""
    reason = install_chromium()
    if reason is not None:
        pytest.skip(f"NO REAL-BROWSER TEST: Chromium cannot be installed here: {reason}")
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


@pytest.fixture
def browser(shared_browser: Browser) -> Browser:
    """The browser, with nothing in its cache."""
    shared_browser.forget()
    return shared_browser


@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=["fastapi_example", "litestar_example"]
)
async def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """One example app in its own uvicorn process, on the in-memory cache, journaled."""
    journal = Journal(tmp_path_factory.mktemp("journal") / "journal.jsonl")
    env = {
        "RECORDER_APP": f"{request.param}:app",
        "RECORDER_JOURNAL": str(journal.path),
        "ATOMCACHE_REDIS_URL": "memory://",
    }
    pythonpath = [str(TESTS), str(EXAMPLES)]
    async with uvicorn_processes("support.recorder:app", 1, env=env, pythonpath=pythonpath) as urls:
        yield Served(urls[0], journal)


async def test_reload_revalidates_and_shows_the_cached_body(
    served: Served, browser: Browser
) -> None:
    """A reload asks with If-None-Match, gets 304 and shows the body the browser kept."""
    query = "offset=10&limit=2"
    url = f"{served.base_url}/products?{query}"
    shown = browser.open(url)
    assert json.loads(shown) == [{"id": 10, "name": "product 10"}, {"id": 11, "name": "product 11"}]
    [first] = served.exchanges(query)
    assert first.status == 200
    assert first.response_headers.get("cache-control", "").startswith("max-age=")

    browser.open("about:blank")
    assert browser.open(url) == shown
    assert len(served.exchanges(query)) == 1  # still fresh: the browser's copy, no request

    assert browser.reload() == shown
    [_, revalidation] = served.exchanges(query)
    etag = first.response_headers.get("etag")
    assert etag
    assert revalidation.request_headers.get("if-none-match") == etag
    assert revalidation.status == 304
    assert revalidation.response_headers.get("etag") == etag


async def test_hard_reload_runs_the_endpoint_once_more(served: Served, browser: Browser) -> None:
    """A hard reload sends Cache-Control: no-cache, and the handler runs exactly once more."""
    query = "offset=20&limit=2"
    run = "computing products 20..21"
    shown = browser.open(f"{served.base_url}/products?{query}")
    [first] = served.exchanges(query)
    assert first.status == 200
    assert served.journal.logged(run) == 1

    # `no-cache` recomputes an entry only once `min_refresh_interval` has passed since it
    # was stored (HTTP.md 13); it was stored before `first` started, by the server's clock.
    await asyncio.sleep(max(0.0, first.time + MIN_REFRESH_INTERVAL + 0.05 - time.time()))
    assert browser.hard_reload() == shown
    [_, hard] = served.exchanges(query)
    assert hard.request_headers.get("cache-control") == "no-cache"
    assert "if-none-match" not in hard.request_headers
    assert hard.status == 200
    assert served.journal.logged(run) == 2
