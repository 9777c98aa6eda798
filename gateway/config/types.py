"""Field types shared by component configs: durations and sizes the way Collector YAML writes them."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)")


def parse_duration(value: Any) -> float:
    """Go duration syntax ("200ms", "1m30s", "0"), or a bare number of seconds (also as text, as
    an environment variable gives it); returns seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration like '5s' or '200ms' is expected, not a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"a duration like '5s' or '200ms' is expected, got {type(value).__name__}")
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    if _NUMBER.fullmatch(text):  # "5" from ${env:TIMEOUT}: seconds, as a bare YAML number is
        return float(text)
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    for match in _PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise ValueError(f"invalid duration {value!r}: use Go syntax such as '5s', '200ms', '1m30s'")
    return sign * total


def _format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(_format_duration, return_type=str)
]
"""Seconds as a float; written in YAML as a Go duration string."""


class ComponentConfig(BaseModel):
    """Base of every component config: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
