"""The documentation's code: every Python block is type-checked, and those marked `run` run.

The pages are README.md, docs/*.md, packages/*/README.md and the docstrings of the
packages' source (the API reference shows them). An HTML comment just before a block,
invisible on the rendered page, says how the block is checked:

- no comment, or `<!-- check: types -->`: type-checked by mypy with the project's strict
  configuration, every block in one mypy run; a body of `...` stands for "your code";
- `<!-- check: run -->`: type-checked, then run as a script, which must exit 0. When a
  `print(...)` line ends with a comment, each printed line must begin its comment, in
  order. `redis://localhost:6379/0` is replaced by the URL of the tests' Redis;
- `<!-- check: continue -->`: the block goes on from the page's previous Python block
  (a route added to the app above, say) and is checked together with it.

The rest of the comment's first line is a note for the reader of the Markdown. Further
lines, up to `-->`, are code put before the block but not shown: what the page takes
for granted, such as the reader's own database. A comment `<!-- check: setup` that
stands alone puts its code before every later block of the page.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass, field
from importlib.metadata import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "packages").glob("*/README.md")),
]
SOURCES = sorted((ROOT / "packages").glob("*/src/**/*.py"))
BLOCK_CHECKS = ("types", "run", "continue")
PART = re.compile(  # a check comment, a fenced block, or a check comment and its block
    r"^(?=<!-- check:|```)"
    r"(?:<!-- check: (?P<check>[a-z]+)[^\n]*?(?:\n(?P<setup>(?:(?!-->).)*?))?-->\n\n?)?"
    r"(?:```(?P<language>\S*)\n(?P<code>.*?)^```[ \t]*$)?",
    re.DOTALL | re.MULTILINE,
)
SHELLS = frozenset(("bash", "sh", "shell"))
PRINT_LINE = re.compile(r"\s*print\(")
MYPY_MESSAGE = re.compile(r"^(?P<path>.+?\.py):(?P<line>\d+): (?P<message>.*)$")
DOCS_REDIS_URL = "redis://localhost:6379/0"

Lines = list[tuple[str, int]]  # code, and the line of the page it comes from


@dataclass
class Snippet:
    """What is checked as one module: a block, its hidden set-up and its continuations."""

    page: str
    line: int
    check: str
    lines: Lines = field(default_factory=list, repr=False)

    @property
    def where(self) -> str:
        """The page and line of the snippet's first block."""
        return f"{self.page}:{self.line}"

    @property
    def code(self) -> str:
        """The snippet as a Python module."""
        return "".join(f"{line}\n" for line, _ in self.lines)

    @property
    def module(self) -> str:
        """A module name for the snippet's file, unique among the snippets."""
        return "doc_" + re.sub(r"\W", "_", self.where)

    def at(self, line: int, message: str) -> str:
        """`message` about line `line` of `code`, located on the page."""
        return f"{self.page}:{self.lines[min(line, len(self.lines)) - 1][1]}: {message}"

    def syntax_error(self) -> str | None:
        """Why the snippet is not Python, or `None`."""
        try:
            ast.parse(self.code)
        except SyntaxError as error:
            return self.at(error.lineno or 1, f"error: {error.msg}")
        return None

    def expected_output(self) -> list[str]:
        """What the commented `print(...)` lines say they print, in order."""
        tokens = tokenize.generate_tokens(io.StringIO(self.code).readline)
        return [
            token.string.removeprefix("#").strip()
            for token in tokens
            if token.type == tokenize.COMMENT and PRINT_LINE.match(token.line)
        ]


@dataclass(frozen=True)
class Block:
    """A fenced block in another language than Python."""

    where: str
    language: str
    code: str


def numbered(text: str, first_line: int) -> Lines:
    """The lines of `text`, each with its line number."""
    return [(line, first_line + number) for number, line in enumerate(text.split("\n"))]


def refuse_misplaced(where: str, check: str | None, language: str | None) -> None:
    """Raise `ValueError` when a check comment is malformed or out of place."""
    problem = None
    if check is None and language is None:
        problem = "a check comment must read <!-- check: WHAT ... -->"
    elif check == "setup" and language is not None:
        problem = "a setup comment stands alone, not directly before a block"
    elif check not in {None, "setup", *BLOCK_CHECKS}:
        problem = f"unknown check {check!r}: use setup or one of {BLOCK_CHECKS}"
    elif check not in {None, "setup"} and language != "python":
        problem = "a check comment must be directly before a Python block"
    if problem is not None:
        msg = f"{where}: {problem}"
        raise ValueError(msg)


def parse(page: str, text: str, first_line: int = 1) -> tuple[list[Snippet], list[Block]]:
    """The Python snippets of a page, and its other fenced blocks."""
    snippets: list[Snippet] = []
    blocks: list[Block] = []
    page_setup: Lines = []
    for part in PART.finditer(text):
        check, language, code = part["check"], part["language"], part["code"]
        line = first_line + text.count("\n", 0, part.start())
        refuse_misplaced(f"{page}:{line}", check, language)
        setup = numbered(part["setup"].removesuffix("\n"), line + 1) if part["setup"] else []
        code_line = first_line + text.count("\n", 0, part.start("code")) if code else line
        if check == "setup":
            page_setup += setup
        elif language != "python":
            blocks.append(Block(f"{page}:{code_line}", language, code))
        elif check == "continue":
            if not snippets:
                msg = f"{page}:{line}: 'continue' needs an earlier Python block on the page"
                raise ValueError(msg)
            snippets[-1].lines += setup + numbered(code.removesuffix("\n"), code_line)
        else:
            lines = page_setup + setup + numbered(code.removesuffix("\n"), code_line)
            snippets.append(Snippet(page, code_line, check or "types", lines))
    return snippets, blocks


def docstrings(path: Path) -> list[tuple[str, int]]:
    """Each docstring of a source file, with the line it starts on."""
    nodes = ast.walk(ast.parse(path.read_text()))
    return [
        (text, node.body[0].lineno)
        for node in nodes
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and (text := ast.get_docstring(node)) is not None
    ]


def collect() -> tuple[list[Snippet], list[Block]]:
    """The snippets and other blocks of every page and docstring."""
    texts = [(page, page.read_text(), 1) for page in PAGES]
    texts += [(source, *found) for source in SOURCES for found in docstrings(source)]
    snippets: list[Snippet] = []
    blocks: list[Block] = []
    for path, text, first_line in texts:
        found = parse(str(path.relative_to(ROOT)), text, first_line)
        snippets += found[0]
        blocks += found[1]
    return snippets, blocks


SNIPPETS, BLOCKS = collect()


@pytest.fixture(scope="module")
def mypy_messages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One mypy run over every snippet that parses: the messages of each, by page line."""
    folder = tmp_path_factory.mktemp("doc_snippets")
    messages: dict[str, list[str]] = {snippet.where: [] for snippet in SNIPPETS}
    files = {}
    for snippet in SNIPPETS:
        error = snippet.syntax_error()
        if error is not None:
            messages[snippet.where].append(error)
            continue
        path = folder / f"{snippet.module}.py"
        path.write_text(snippet.code)
        files[str(path)] = snippet
    result = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")),
            *("--cache-dir", str(folder / ".mypy_cache"), "--no-error-summary"),
            *("--disable-error-code", "empty-body"),  # `...` is the reader's code
            *files,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode in {0, 1}, result.stdout + result.stderr
    for output in result.stdout.splitlines():
        found = MYPY_MESSAGE.match(output)
        assert found, f"unexpected mypy output: {output}"
        assert found["path"] in files, f"mypy found a problem outside the docs: {output}"
        snippet = files[found["path"]]
        messages[snippet.where].append(snippet.at(int(found["line"]), found["message"]))
    return messages


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.where)
def test_python_block_type_checks(snippet: Snippet, mypy_messages: dict[str, list[str]]) -> None:
    """The block passes mypy strict against the packages as they are."""
    messages = mypy_messages[snippet.where]
    assert not [message for message in messages if ": error:" in message], "\n".join(messages)


@pytest.mark.parametrize(
    "snippet",
    [snippet for snippet in SNIPPETS if snippet.check == "run"],
    ids=lambda snippet: snippet.where,
)
def test_python_block_runs(
    snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The block runs as written and prints what its comments say."""
    code = snippet.code
    if DOCS_REDIS_URL in code:
        code = code.replace(DOCS_REDIS_URL, request.getfixturevalue("redis_url"))
    script = tmp_path / f"{snippet.module}.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    expected = snippet.expected_output()
    if expected:
        printed = result.stdout.splitlines()
        assert len(printed) == len(expected), f"printed:\n{result.stdout}expected: {expected}"
        for line, comment in zip(printed, expected, strict=True):
            assert comment.startswith(line), f"printed {line!r}, the comment says {comment!r}"


@pytest.mark.parametrize(
    "block",
    [block for block in BLOCKS if block.language in SHELLS],
    ids=lambda block: block.where,
)
def test_shell_block_names_real_commands(block: Block) -> None:
    """Every `make` target and `pip install`ed package of a shell block exists."""
    targets = set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    packages = {path.parent.name for path in (ROOT / "packages").glob("*/pyproject.toml")}
    for line in block.code.splitlines():
        words = line.partition("#")[0].split()
        if words[:1] == ["make"]:
            assert set(words[1:]) <= targets, f"{block.where}: {line}"
        if words[:2] == ["pip", "install"]:
            for word in words[2:]:
                requirement = Requirement(word.strip("\"'"))
                assert requirement.name in packages, f"{block.where}: {line}"
                extras = set(metadata(requirement.name).get_all("Provides-Extra") or [])
                assert requirement.extras <= extras, f"{block.where}: {line}"
