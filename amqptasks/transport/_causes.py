"""Every exception pika's and aiormq's wrappers keep inside the one they raise."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps: its args, ``.exceptions``, ``.exception``, cause, context."""
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [*item.args, *(getattr(item, "exceptions", None) or ())]
        todo += [getattr(item, "exception", None), item.__cause__, item.__context__]
