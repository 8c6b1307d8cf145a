"""The original atomcache README's two examples run on `ResponseCache`, changed as shown.

The examples are read from docs/migrating.md, where each appears before (the original)
and after (on atomcache-fastapi). This test checks that each "after" differs from its
"before" only in the import line (and, in `main.py`, FastAPI's own `add_event_handler`
move), then runs the "after" versions:

- `events.py` + `main.py` as a package served by two uvicorn processes on a real
  Redis: three concurrent cold requests over both compute once, the next is a hit;
- the direct-use helper in this process, against a local server standing in for the
  external API: five concurrent calls and one more reach the server once.

What the README leaves to the reader is given here, as the migration page says:
`router`, `List`, `TheResponseModel`, `db` and `asyncio` are defined before `main.py`
(its "heavy work" of 10 s shortened to a tenth), the router is included after it, and
`redis://localhost` and `https://external-api.io` point at the test's servers.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.util
import re
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from atomcache_core import Cache
from atomcache_fastapi import ResponseCache
from support.servers import serve_asgi, uvicorn_processes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "migrating.md"
BLOCK = re.compile(
    r"<!-- check: types README (?P<when>before|after): (?P<name>\S+)[^\n]*\n.*?-->\n"
    r"```python\n(?P<code>.*?)^```",
    re.DOTALL | re.MULTILINE,
)
ORIGINAL_IMPORT = "from atomcache import Cache"
NEW_IMPORT = "from atomcache_fastapi import ResponseCache as Cache"
EVENT_HANDLERS = ("app.add_event_handler(", "app.router.add_event_handler(")

READER_MAIN = """\
import asyncio as _asyncio
import os
from types import SimpleNamespace
from typing import List

from fastapi import APIRouter
from pydantic import BaseModel
from redis.asyncio import Redis as _Redis


class TheResponseModel(BaseModel):
    id: int


class _Database:
    async def find(self, model, *, skip, limit):
        counter = _Redis.from_url(os.environ["README_REDIS_URL"])
        await counter.incr(os.environ["README_COUNTER"])
        await counter.aclose()
        return [model(id=index) for index in range(skip, skip + limit)]


db = _Database()
router = APIRouter()
asyncio = SimpleNamespace(sleep=lambda seconds: _asyncio.sleep(seconds / 10))
"""
READER_HELPER = "from typing import List\n"


def examples() -> dict[tuple[str, str], str]:
    """The README's files on the migration page: `(when, name) -> code`."""
    return {(m["when"], m["name"]): m["code"] for m in BLOCK.finditer(PAGE.read_text())}


@pytest.mark.parametrize("name", ["events.py", "main.py", "helper.py"])
def test_each_example_changes_only_its_import(name: str) -> None:
    """After differs from before in the import line, and main.py in add_event_handler."""
    found = examples()
    before, after = found["before", name], found["after", name]
    assert ORIGINAL_IMPORT in before
    expected = before.replace(ORIGINAL_IMPORT, NEW_IMPORT)
    if name == "main.py":
        expected = expected.replace(*EVENT_HANDLERS)
    assert after == expected, "".join(difflib.unified_diff(expected.split("\n"), after.split("\n")))


@pytest.fixture
def readme_package(tmp_path: Path, redis_url: str) -> Path:
    """events.py and main.py as the package `readme_app`, pointed at the test's Redis."""
    found = examples()
    package = tmp_path / "readme_app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    events = found["after", "events.py"].replace('"redis://localhost"', repr(redis_url))
    (package / "events.py").write_text(events)
    main = f"{READER_MAIN}\n{found['after', 'main.py']}\n\napp.include_router(router)\n"
    (package / "main.py").write_text(main)
    return tmp_path


async def test_the_dependency_example_computes_once_over_two_processes(
    readme_package: Path, redis_url: str
) -> None:
    """Three concurrent cold requests over two instances compute once; the next is a hit."""
    counter = f"readme-{uuid.uuid4().hex[:8]}"
    env = {"README_REDIS_URL": redis_url, "README_COUNTER": counter}
    pythonpath = [str(readme_package), *sys.path]
    control = Redis.from_url(redis_url)
    try:
        async with (
            uvicorn_processes("readme_app.main:app", 2, env=env, pythonpath=pythonpath) as urls,
            httpx.AsyncClient(timeout=30) as client,
        ):
            query = {"offset": 7, "items": 2}
            cold = await asyncio.gather(
                *(client.get(f"{urls[index % 2]}/resources", params=query) for index in range(3))
            )
            assert [answer.status_code for answer in cold] == [200, 200, 200]
            assert {answer.text for answer in cold} == {'[{"id":7},{"id":8}]'}
            assert int(await control.get(counter) or 0) == 1
            for url in urls:
                hit = await client.get(f"{url}/resources", params=query)
                assert hit.headers["cache-status"].startswith("atomcache; hit"), hit.headers
                assert hit.text == '[{"id":7},{"id":8}]'
            assert int(await control.get(counter) or 0) == 1
    finally:
        await control.aclose()


@pytest.fixture
def in_memory_backend() -> Iterator[None]:
    """The direct-use example runs without `init`: on the in-memory default."""
    before = ResponseCache.backend
    ResponseCache.backend = Cache(namespace="atomcache")
    yield
    ResponseCache.backend = before


@pytest.mark.usefixtures("in_memory_backend")
async def test_the_direct_use_example_calls_the_external_api_once(tmp_path: Path) -> None:
    """Five concurrent calls of the helper, then one more: the API is called once."""
    calls: list[str] = []

    async def resource(request: Request) -> JSONResponse:
        calls.append(request.path_params["ref"])
        await asyncio.sleep(0.2)
        return JSONResponse([{"ref": request.path_params["ref"]}])

    api = Starlette(routes=[Route("/{ref}", resource)])
    async with serve_asgi(api) as base_url:
        code = examples()["after", "helper.py"].replace("https://external-api.io", base_url)
        path = tmp_path / "readme_helper.py"
        path.write_text(READER_HELPER + code)
        helper = load(path)
        results = await asyncio.gather(*(helper.requesting_helper("r1") for _ in range(5)))
        assert results == [[{"ref": "r1"}]] * 5
        assert await helper.requesting_helper("r1") == [{"ref": "r1"}]
    assert calls == ["r1"]


def load(path: Path) -> Any:
    """Import the module at `path`."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
