"""The Python examples of README.md and docs/: which run, which are files, which are fragments.

The convention, kept light so a page reads normally on GitHub and on the site:

- a ```` ```python ```` block is an example the tests run, in page order, in one
  namespace (a later block may use an earlier block's names), in a temporary
  directory outside the repository, against a real RabbitMQ node;
- a ```` ```python title="proj.py" ```` block is a file: written to that name in the
  directory before anything runs (the site shows the name above the code);
- a block right after an ``<!-- fragment -->`` line is not run (it needs something
  the page does not show: your own broker, a Celery app, a half-written module); it
  is still compiled, so a typo fails the tests;
- ``<!-- docs-test: worker ARGS -->`` anywhere on a page starts
  ``amqptasks worker ARGS`` in that directory, once the files are written, before
  the examples run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRAGMENT_MARK = "<!-- fragment -->"
_FENCE = re.compile(r"^```(?:python|py)(?P<attrs>\s.*)?$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')
_WORKER = re.compile(r"<!--\s*docs-test:\s*worker\s+(?P<args>.*?)\s*-->")


@dataclass
class Block:
    """One Python block of a page."""

    line: int
    code: str
    kind: str  # "run", "file" or "fragment"
    title: str | None = None


@dataclass
class Page:
    """A page's Python blocks and the worker its examples need."""

    path: Path
    blocks: list[Block] = field(default_factory=list)
    worker: list[str] | None = None

    @property
    def name(self) -> str:
        return str(self.path.relative_to(REPO))

    def of_kind(self, kind: str) -> list[Block]:
        return [block for block in self.blocks if block.kind == kind]


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def parse(path: Path) -> Page:
    """The Python blocks of ``path``, classified by the convention above."""
    lines = path.read_text().splitlines()
    page = Page(path)
    previous = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        found = _WORKER.search(line)
        if found:
            page.worker = shlex.split(found["args"])
        match = _FENCE.match(line.strip()) if line.startswith("```") else None
        if match is None:
            if line.strip():
                previous = line.strip()
            index += 1
            continue
        attrs = match["attrs"] or ""
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        code = "\n".join(lines[index + 1 : end]) + "\n"
        title = _TITLE.search(attrs)
        if previous == FRAGMENT_MARK:
            kind = "fragment"
        elif title:
            kind = "file"
        else:
            kind = "run"
        page.blocks.append(Block(index + 2, code, kind, title["title"] if title else None))
        previous = ""
        index = end + 1
    return page
