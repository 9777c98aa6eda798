"""Service discovery for the prometheus receiver: where targets come from.

A discoverer runs until cancelled and sends target groups as they change, like Prometheus's
discovery manager: each group is identified by its `source`; sending a group replaces the
previous group with that source, and a group with no targets removes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class TargetGroup:
    source: str
    """Unique within one discoverer, e.g. "pod/default/web-1" or "file.yaml:0"."""
    targets: tuple[dict[str, str], ...]
    """Each has at least `__address__` ("host:port") plus its own `__meta_*` labels."""
    labels: dict[str, str] = field(default_factory=dict)
    """Labels common to every target of the group (a target's own labels win)."""


class Discoverer(Protocol):
    async def run(self, send: Callable[[list[TargetGroup]], None]) -> None:
        """Discover until cancelled, calling `send` with the groups that changed."""
        ...
