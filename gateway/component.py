"""The component model: ids, kinds, factories, and the one contract stages talk through.

A stage is a `Consumer`: `await consume(payload)`. Once the call is made the payload belongs to
the callee; a fan-out hands a copy to every consumer but the last when a consumer mutates.
`consume` returns when the data is taken (stored, or durably queued) and raises a
`gateway.errors` error when it is not, which is how an acknowledgement travels back to a client.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from gateway.signals import Signal

if TYPE_CHECKING:
    from gateway.payload import Payload
    from gateway.telemetry import SelfTelemetry


class Kind(enum.Enum):
    RECEIVER = "receivers"
    PROCESSOR = "processors"
    EXPORTER = "exporters"
    EXTENSION = "extensions"


_ID = re.compile(r"^([a-zA-Z][0-9a-zA-Z_]*)(?:/(.+))?$")


@dataclass(frozen=True, slots=True, order=True)
class ComponentID:
    """`type[/name]`, as written in Collector YAML."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ComponentID:
        match = _ID.match(str(text).strip())
        if not match:
            raise ValueError(f"invalid component id {text!r}: expected 'type' or 'type/name'")
        return cls(match.group(1), match.group(2) or "")

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


@runtime_checkable
class Consumer(Protocol):
    async def consume(self, payload: Payload) -> None: ...


class Component(Protocol):
    async def start(self, host: Host) -> None: ...

    async def shutdown(self) -> None: ...


class Lifecycle(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


@dataclass
class Status:
    """Where the whole gateway is in its life; health checks report it."""

    state: Lifecycle = Lifecycle.STARTING
    since: float = field(default_factory=time.time)  # wall clock of the last change

    def set(self, state: Lifecycle) -> None:
        self.state, self.since = state, time.time()


@dataclass
class Host:
    """What a starting component may reach: self-telemetry, the other components, the status."""

    telemetry: SelfTelemetry
    exporters: Mapping[ComponentID, Any] = field(default_factory=dict)
    extensions: Mapping[ComponentID, Any] = field(default_factory=dict)
    status: Status = field(default_factory=Status)


@dataclass(frozen=True)
class Factory:
    """Creates one kind of component from its typed config.

    receivers:  create(id, config, consumers: {Signal: Consumer}) -> Component
    processors: create(id, config, signal, next: Consumer) -> Component & Consumer
    exporters:  create(id, config) -> Component & Consumer (consumes every signal it supports)
    extensions: create(id, config) -> Component
    """

    kind: Kind
    type: str
    config_model: type[BaseModel]
    create: Callable[..., Any]
    signals: frozenset[Signal] = frozenset(Signal)
    aliases: tuple[str, ...] = ()
    mutates_data: bool = False

    def default_config(self) -> BaseModel:
        return self.config_model()
