"""Every Python block of README.md and docs/ compiles; fragments are marked, not guessed.

Which blocks run against a real node: tests/integration/test_docs_examples.py.
"""

from __future__ import annotations

import ast

import pytest

from tests.docs_examples import FRAGMENT_MARK, Page, pages, parse

PAGES = [parse(path) for path in pages()]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_compiles(page: Page) -> None:
    for block in page.blocks:
        compile(
            block.code, f"{page.name}:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )


def test_the_convention_finds_runnable_examples_files_and_fragments() -> None:
    kinds = {block.kind for page in PAGES for block in page.blocks}
    assert kinds == {"run", "file", "fragment"}
    quickstart = next(p for p in PAGES if p.name == "docs/quickstart.md")
    assert [b.title for b in quickstart.of_kind("file")] == ["proj.py"]
    assert quickstart.worker is not None and quickstart.worker[:2] == ["-A", "proj:app"]


def test_a_fragment_mark_applies_to_the_next_block_only(tmp_path: object) -> None:
    from pathlib import Path

    page_path = Path(str(tmp_path)) / "page.md"
    page_path.write_text(
        f"{FRAGMENT_MARK}\n\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n"
        '\n```python title="m.py"\nz = 3\n```\n'
    )
    import tests.docs_examples as docs

    page = docs.Page(page_path)
    page.blocks = docs.parse(page_path).blocks
    assert [b.kind for b in page.blocks] == ["fragment", "run", "file"]
    assert [b.line for b in page.blocks] == [4, 8, 12]
