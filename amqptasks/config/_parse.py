"""Parsers of environment-variable and URL values, and the checks settings groups share."""

from __future__ import annotations

import math
from typing import Any

from amqptasks.exceptions import ConfigError


def parse_bool(value: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (or empty)."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def positive_float(value: str) -> float:
    """A finite number > 0."""
    number = float(value)
    if not number > 0 or math.isinf(number):  # "not >" also refuses NaN
        raise ValueError(f"must be > 0, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    """An integer >= 0."""
    number = int(value)
    if number < 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return number


def str_tuple(value: str) -> tuple[str, ...]:
    """Comma-separated words."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def optional_str(value: str) -> str | None:
    """Empty means None."""
    return value or None


def optional_int(value: str) -> int | None:
    """Empty means None."""
    return int(value) if value else None


def optional_float(value: str) -> float | None:
    """Empty means None."""
    return float(value) if value else None


def check_number(name: str, value: Any, *, positive: bool = False) -> None:
    """Refuse a value that is not a number >= 0 (> 0 and finite with ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        ok = False
    elif positive:
        ok = value > 0 and not math.isinf(value)
    else:
        ok = value >= 0
    if not ok:
        raise ConfigError(f"{name} must be a number {'> 0' if positive else '>= 0'}, got {value!r}")


def check_optional_int(name: str, value: Any) -> None:
    """Refuse a value that is neither None nor an integer >= 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be an integer >= 1 (or None), got {value!r}")
