"""The documentation's Python code: every block parses; the quickstart blocks run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks(page: Path) -> list[str]:
    """The Python code blocks of a Markdown page."""
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_python_block_parses(page: Path) -> None:
    """No page shows Python that is not Python."""
    for code in blocks(page):
        ast.parse(code)


@pytest.mark.parametrize("index", [0, 1, 2], ids=["core", "fastapi", "litestar"])
def test_quickstart_blocks_run(index: int) -> None:
    """Each quickstart block runs as written (the apps are built, the core prints)."""
    code = blocks(ROOT / "docs" / "quickstart.md")[index]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    if index == 0:
        assert result.stdout.strip() == "{'year': 2024, 'total': 42} 1"
