"""`static_configs`: targets written in the configuration, as one group per entry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pydantic import Field, field_validator

from receivers.prometheus.discovery import TargetGroup
from receivers.prometheus.httpconfig import PromConfig


class StaticConfig(PromConfig):
    targets: list[str] = Field(default_factory=list, description="host:port of each target.")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Labels given to every target of the entry.")

    @field_validator("labels")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name:
                raise ValueError("a label name must not be empty")
        return value


def static_groups(configs: list[StaticConfig]) -> list[TargetGroup]:
    """The groups of `static_configs`, with Prometheus's sources ("0", "1", …)."""
    return [TargetGroup(source=str(i),
                        targets=tuple({"__address__": t} for t in cfg.targets),
                        labels=dict(cfg.labels))
            for i, cfg in enumerate(configs)]


class StaticDiscoverer:
    def __init__(self, configs: list[StaticConfig]) -> None:
        self.groups = static_groups(configs)

    async def run(self, send: Callable[[list[TargetGroup]], None]) -> None:
        send(self.groups)
        await asyncio.Event().wait()  # nothing changes until cancelled
