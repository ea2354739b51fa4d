"""Body compression, named in the ``compression`` header as kombu does.

The header holds kombu's content type so Celery can read our messages and we
can read Celery's: ``zlib``/``gzip`` -> ``application/x-gzip`` (a zlib stream,
as kombu writes it; we also read real gzip streams), ``bz2`` ->
``application/x-bz2``, ``lzma``/``xz`` -> ``application/x-lzma``.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amqptasks.exceptions import ConfigError, DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable


def _inflate(data: bytes) -> bytes:
    # wbits 47 = 32 + 15: accept a zlib or a gzip header.
    return zlib.decompress(data, 47)


@dataclass(frozen=True)
class Codec:
    """A compression method: the header value and the two functions."""

    content_type: str
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


_GZIP = Codec("application/x-gzip", zlib.compress, _inflate)
_BZ2 = Codec("application/x-bz2", bz2.compress, bz2.decompress)
_LZMA = Codec("application/x-lzma", lzma.compress, lzma.decompress)

_BY_NAME: dict[str, Codec] = {
    "zlib": _GZIP,
    "gzip": _GZIP,
    "bz2": _BZ2,
    "bzip2": _BZ2,
    "lzma": _LZMA,
    "xz": _LZMA,
}
_BY_CONTENT_TYPE: dict[str, Codec] = {c.content_type: c for c in (_GZIP, _BZ2, _LZMA)}


def codec(name: str) -> Codec:
    """The codec for a name (``zlib``) or header value (``application/x-gzip``).

    Raises:
        ConfigError: for an unknown method.
    """
    found = _BY_NAME.get(name) or _BY_CONTENT_TYPE.get(name)
    if found is None:
        raise ConfigError(f"unknown compression {name!r}; known: {', '.join(sorted(_BY_NAME))}")
    return found


def decompress(body: bytes, header_value: str) -> bytes:
    """Undo the compression named by a message's ``compression`` header.

    Raises:
        DecodeError: for an unknown method or a corrupt body.
    """
    found = _BY_CONTENT_TYPE.get(header_value) or _BY_NAME.get(header_value)
    if found is None:
        raise DecodeError(f"unknown compression {header_value!r}", raw=body)
    try:
        return found.decompress(body)
    except (zlib.error, OSError, lzma.LZMAError, ValueError) as exc:
        raise DecodeError(f"cannot decompress body ({header_value}): {exc}", raw=body) from exc
