"""The three distributions build, carry complete metadata and work once installed alone.

One `uv build` makes the sdists and wheels; each install goes into a fresh virtual
environment, pinned to the versions of `uv.lock` (so a warm uv cache needs no network),
and a script run by that environment's Python proves the package works there.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import atomcache_core

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from email.message import Message

ROOT = Path(__file__).resolve().parents[1]
VERSION = atomcache_core.__version__

# The packages, what each must require (besides nothing else), and its framework classifier.
PACKAGES = {
    "atomcache-core": ({"click", "redis", "typing-extensions"}, "Framework :: AsyncIO"),
    "atomcache-fastapi": ({"atomcache-core", "fastapi"}, "Framework :: FastAPI"),
    "atomcache-litestar": ({"atomcache-core", "litestar"}, "Framework :: Litestar"),
}
#: Each package's extras: the one library each adds, by extra.
EXTRAS = {
    "atomcache-core": {
        "msgspec": "msgspec",
        "orjson": "orjson",
        "otel": "opentelemetry-api",
        "prometheus": "prometheus-client",
    }
}
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")

pytestmark = pytest.mark.timeout(300)  # a cold uv cache downloads the frameworks

CORE_SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.util, json, pkgutil, sys

    for name in ("fastapi", "starlette", "litestar"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed"
    try:
        import fastapi
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError("fastapi imports")

    import atomcache_core
    from atomcache_core import Cache

    for module in pkgutil.walk_packages(atomcache_core.__path__, "atomcache_core."):
        __import__(module.name)

    async def main():
        calls = []

        async def compute():
            calls.append(1)
            await asyncio.sleep(0.01)
            return "computed"

        async with Cache() as cache:
            await cache.set("key", {"list": [1, None]})
            assert await cache.get("key") == {"list": [1, None]}
            flights = [cache.get_or_set("cold", compute) for _ in range(5)]
            assert await asyncio.gather(*flights) == ["computed"] * 5
            assert calls == [1], calls

    asyncio.run(main())
    loaded = {name.split(".")[0] for name in sys.modules}
    frameworks = sorted(loaded & {"fastapi", "starlette", "litestar"})
    print(json.dumps({"file": atomcache_core.__file__, "frameworks": frameworks}))
    """
)

# A tiny app with one cached route per framework, driven through ASGI directly (lifespan
# included), so that the environment holds the adapter's own dependencies and nothing else.
ADAPTER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys

    from atomcache_core import Cache

    if sys.argv[1] == "fastapi":
        import atomcache_fastapi as adapter
        from fastapi import FastAPI

        app = FastAPI()
        adapter.setup_cache(app, Cache())

        @app.get("/items")
        @adapter.cached(ttl=60)
        async def items() -> list[dict[str, int]]:
            return [{"id": 1}]
    else:
        import atomcache_litestar as adapter
        from litestar import Litestar, get

        @get("/items")
        @adapter.cached(ttl=60)
        async def items() -> list[dict[str, int]]:
            return [{"id": 1}]

        app = Litestar([items], plugins=[adapter.AtomCachePlugin(Cache())])


    async def request(state, headers):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": "/items", "raw_path": b"/items",
            "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80), "state": dict(state),
            "headers": [(b"host", b"testserver")]
            + [(name.encode(), value.encode()) for name, value in headers.items()],
        }
        sent, done, received = [], asyncio.Event(), []

        async def receive():
            if received:
                await done.wait()
                return {"type": "http.disconnect"}
            received.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await app(scope, receive, send)
        start = sent[0]
        return {
            "status": start["status"],
            "headers": {k.decode().lower(): v.decode() for k, v in start["headers"]},
            "body": b"".join(m.get("body", b"") for m in sent[1:]).decode(),
        }


    async def main():
        inbox, outbox = asyncio.Queue(), asyncio.Queue()
        lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        running = asyncio.create_task(app(lifespan, inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
        first = await request(lifespan["state"], {})
        second = await request(lifespan["state"], {})
        etag = second["headers"].get("etag", "")
        third = await request(lifespan["state"], {"if-none-match": etag})
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await running
        return [first, second, third]


    responses = asyncio.run(main())
    print(json.dumps({"file": adapter.__file__, "responses": responses}))
    """
)


@dataclass(frozen=True)
class Built:
    """The sdist and the wheel of one package."""

    sdist: Path
    wheel: Path


def find_uv() -> str:
    """`uv` from PATH, else the one `make` installs into .tools/ (as the Makefile does)."""
    uv = shutil.which("uv") or shutil.which("uv", path=str(ROOT / ".tools" / "bin"))
    if uv is None:
        pytest.fail(
            "uv not found: neither `uv` on PATH nor .tools/bin/uv; "
            "install it with `make .tools/bin/uv` (any `make test` does)"
        )
    return uv


def clean_env() -> dict[str, str]:
    """The environment minus what would leak this project's interpreter into a subprocess."""
    leaks = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    return {key: value for key, value in os.environ.items() if key not in leaks}


def attempt(*command: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `command` from the repository root, capturing its output."""
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def run(*command: str | Path, timeout: float = 120) -> str:
    """Run `command`; fail the test with its output unless it succeeds; return stdout."""
    result = attempt(*command, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def uv() -> str:
    return find_uv()


@pytest.fixture(scope="module")
def built(uv: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """One `uv build` of the three packages: their sdists and wheels by distribution name."""
    out = tmp_path_factory.mktemp("dist")
    run(uv, "build", "--all-packages", "--out-dir", out, timeout=180)
    found = {}
    for name in PACKAGES:
        stem = f"{name.replace('-', '_')}-{VERSION}"
        found[name] = Built(sdist=out / f"{stem}.tar.gz", wheel=out / f"{stem}-py3-none-any.whl")
        assert found[name].sdist.is_file(), sorted(path.name for path in out.iterdir())
        assert found[name].wheel.is_file(), sorted(path.name for path in out.iterdir())
    return found


@pytest.fixture(scope="module")
def constraints(uv: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The versions of uv.lock as a constraints file, so installs match the lock."""
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    run(
        uv,
        "export",
        "--frozen",
        "--all-packages",
        "--no-emit-workspace",
        "--no-hashes",
        "--format=requirements.txt",
        f"--output-file={path}",
    )
    return path


@pytest.fixture
def install(
    uv: str, constraints: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Path]]:
    """Make a fresh venv holding the given wheels (and their dependencies); give its Python."""
    made: list[Path] = []

    def make(*wheels: Path) -> Path:
        venv = tmp_path_factory.mktemp("venv")
        made.append(venv)
        run(uv, "venv", "--quiet", "--python", sys.executable, venv)
        python = venv / "bin" / "python"
        pip = (uv, "pip", "install", "--quiet", "--python", python, "--constraints", constraints)
        # The lock's versions are in uv's cache once `make test` has synced .venv.
        if attempt(*pip, "--offline", *wheels).returncode != 0:
            run(*pip, *wheels, timeout=240)
        return python

    yield make
    for venv in made:
        shutil.rmtree(venv, ignore_errors=True)


def run_in(python: Path, script: str, *args: str) -> dict[str, object]:
    """Run `script` with `python` outside the repository; parse its last line of JSON."""
    result = subprocess.run(
        [str(python), "-c", script, *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=python.parents[1],
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return output


def wheel_metadata(wheel: Path) -> tuple[Message, set[str]]:
    """The METADATA of `wheel`, and the names of the files it holds."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = email.parser.BytesParser().parsebytes(archive.read(metadata_name))
    return metadata, names


@pytest.mark.parametrize("name", PACKAGES)
def test_wheel_metadata_is_complete(name: str, built: dict[str, Built]) -> None:
    """Name, version, dependencies, licence, classifiers, URLs and py.typed are all there."""
    metadata, files = wheel_metadata(built[name].wheel)
    required_names, framework = PACKAGES[name]
    module = name.replace("-", "_")

    assert Version(metadata["Metadata-Version"]) >= Version("2.4")  # PEP 639 licence fields
    assert metadata["Name"] == name
    assert metadata["Version"] == VERSION
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata["Summary"]
    assert metadata["Author"] == "atomcache contributors"
    assert metadata["Keywords"]
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert f"pip install {name}" in str(metadata.get_payload())  # the README, as description

    everything = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    requirements = [req for req in everything if req.marker is None]
    assert {canonicalize_name(req.name) for req in requirements} == required_names
    assert all(not req.extras for req in requirements)
    optional = {
        str(req.marker).split('"')[1]: canonicalize_name(req.name)
        for req in everything
        if req.marker is not None
    }
    assert optional == EXTRAS.get(name, {})
    for requirement in requirements:
        if requirement.name == "atomcache-core":
            assert str(requirement.specifier) == f"=={VERSION}"

    classifiers = set(metadata.get_all("Classifier") or [])
    expected = {
        "Typing :: Typed",
        "Framework :: AsyncIO",
        framework,
        "Intended Audience :: Developers",
    }
    expected |= {f"Programming Language :: Python :: {version}" for version in PYTHON_VERSIONS}
    assert expected <= classifiers

    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source"} <= set(urls)
    assert all(url.startswith("https://github.com/atomcache/atomcache") for url in urls.values())

    dist_info = f"{module}-{VERSION}.dist-info"
    assert f"{module}/py.typed" in files
    assert f"{module}/__init__.py" in files
    assert all(file.startswith((f"{module}/", f"{dist_info}/")) for file in files), files
    with zipfile.ZipFile(built[name].wheel) as archive:
        licence = archive.read(f"{dist_info}/licenses/LICENSE")
    assert licence == (ROOT / "LICENSE").read_bytes()


def test_core_wheel_ships_the_lua_scripts(built: dict[str, Built]) -> None:
    """Every `.lua` file of the Redis backends is in the core wheel, byte for byte."""
    package = "atomcache_core/backends/redis"
    sources = sorted((ROOT / "packages" / "atomcache-core" / "src" / package).glob("*.lua"))
    assert sources, "the Redis backends' scripts are .lua files"
    with zipfile.ZipFile(built["atomcache-core"].wheel) as archive:
        shipped = {name for name in archive.namelist() if name.endswith(".lua")}
        assert shipped == {f"{package}/{source.name}" for source in sources}
        for source in sources:
            assert archive.read(f"{package}/{source.name}") == source.read_bytes(), source.name


@pytest.mark.parametrize("name", PACKAGES)
def test_sdist_holds_sources_readme_and_licence(name: str, built: dict[str, Built]) -> None:
    """The sdist has what a wheel is built from, the README and the repository's LICENSE."""
    module = name.replace("-", "_")
    top = f"{module}-{VERSION}"
    with tarfile.open(built[name].sdist) as archive:
        names = set(archive.getnames())
        licence = archive.extractfile(f"{top}/LICENSE")
        assert licence is not None
        assert licence.read() == (ROOT / "LICENSE").read_bytes()
    for file in ("PKG-INFO", "pyproject.toml", "README.md", f"src/{module}/py.typed"):
        assert f"{top}/{file}" in names


def test_package_licences_are_the_repository_licence() -> None:
    """Each package's LICENSE (hatchling packs only files inside the package) is the root's."""
    for name in PACKAGES:
        assert (ROOT / "packages" / name / "LICENSE").read_bytes() == (
            ROOT / "LICENSE"
        ).read_bytes(), f"copy LICENSE to packages/{name}/LICENSE"


def test_core_wheel_works_without_web_frameworks(
    built: dict[str, Built], install: Callable[..., Path]
) -> None:
    """The core wheel alone installs, imports every module and caches, with no framework."""
    python = install(built["atomcache-core"].wheel)
    output = run_in(python, CORE_SCRIPT)
    assert Path(str(output["file"])).is_relative_to(python.parents[1])
    assert output["frameworks"] == []


@pytest.mark.parametrize("framework", ["fastapi", "litestar"])
def test_adapter_wheel_serves_a_cached_route(
    framework: str, built: dict[str, Built], install: Callable[..., Path]
) -> None:
    """Core and adapter wheels install with the framework; a repeat is a hit, then a 304."""
    python = install(built["atomcache-core"].wheel, built[f"atomcache-{framework}"].wheel)
    output = run_in(python, ADAPTER_SCRIPT, framework)
    assert Path(str(output["file"])).is_relative_to(python.parents[1])
    responses = output["responses"]
    assert isinstance(responses, list)
    first, second, third = responses
    assert first["status"] == 200, first
    assert second["status"] == 200, second
    assert second["headers"]["cache-status"].startswith("atomcache; hit"), second
    assert second["headers"]["etag"].startswith('"'), second  # strong
    assert json.loads(second["body"]) == [{"id": 1}]
    assert third["status"] == 304, third
