"""atomcache-core stands alone: no web framework is imported or needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import atomcache_core

BLOCK_FRAMEWORKS = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoFrameworks(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"fastapi", "starlette", "litestar"}:
                raise ImportError(f"{name} is blocked: atomcache_core must not need it")
            return None

    sys.meta_path.insert(0, NoFrameworks())
    import pkgutil, asyncio, atomcache_core
    for module in pkgutil.walk_packages(atomcache_core.__path__, "atomcache_core."):
        __import__(module.name)

    async def main():
        async with atomcache_core.Cache() as cache:
            await cache.set("k", 1)
            assert await cache.get("k") == 1

    asyncio.run(main())
    assert not {"fastapi", "starlette", "litestar"} & set(sys.modules)
    print("ok")
    """
)


def test_core_works_with_frameworks_unimportable() -> None:
    """Every core module imports and a cache works while no web framework can be imported."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_FRAMEWORKS], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_public_names_are_exported() -> None:
    """Every name in __all__ exists, and the DESIGN.md names are among them."""
    for name in atomcache_core.__all__:
        assert hasattr(atomcache_core, name), name
    design_names = {"Cache", "Storage", "LockBackend", "Notifier", "Serializer", "JsonSerializer"}
    assert design_names <= set(atomcache_core.__all__)
