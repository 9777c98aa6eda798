"""The unit of data between stages: one OTLP Export*ServiceRequest plus its request context.

It holds the serialized bytes and/or the parsed (upb) message and produces either lazily, so a
pipeline without mutating processors hands the exact received bytes to ClickHouse, and one that
edits a Resource pays for one parse and one serialization, never a Python object per span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.signals import Signal, count_items


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the receiver knew about the request beyond its body (k8sattributes needs the peer)."""

    client_address: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Payload:
    signal: Signal
    _raw: bytes | None = None
    _message: Any = None
    items: int = 0
    context: RequestContext = field(default_factory=RequestContext)

    @classmethod
    def from_message(
        cls, signal: Signal, message: Any, context: RequestContext | None = None,
        raw: bytes | None = None, items: int | None = None,
    ) -> Payload:
        """`items`: the message's count, when the caller has it (counting reads every scope)."""
        if items is None:
            items = count_items(signal, message)
        return cls(signal, raw, message, items, context or RequestContext())

    @property
    def message(self) -> Any:
        if self._message is None:
            self._message = self.signal.request_type.FromString(self._raw or b"")
        return self._message

    def mutable_message(self) -> Any:
        """The message, for a processor about to change it: the cached bytes become stale."""
        message = self.message
        self._raw = None
        return message

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = self._message.SerializeToString() if self._message is not None else b""
        return self._raw
