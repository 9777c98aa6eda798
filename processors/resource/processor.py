"""The `resource` processor: actions on each resource's attributes, once per ResourceSpans /
ResourceMetrics / ResourceLogs — never per span, data point or log record.

A request that no action changed goes on with its received bytes. One that changed gets new
bytes spliced together from the re-encoded Resources and the untouched rest of the received
bytes (processors/resource/wire.py), rather than a serialization of the whole request.
"""

from __future__ import annotations

from gateway.component import ComponentID, Consumer, Host
from gateway.payload import Payload
from gateway.signals import Signal, resources
from processors.attributes.actions import AttrProc, apply
from processors.resource.config import ResourceConfig
from processors.resource.wire import replace_resources


class ResourceProcessor:
    def __init__(self, cid: ComponentID, cfg: ResourceConfig, signal: Signal,
                 nxt: Consumer) -> None:
        self.id = cid
        self.signal = signal
        self.next = nxt
        self._proc = AttrProc([a.spec() for a in cfg.attributes])

    async def start(self, host: Host) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, payload: Payload) -> None:
        steps = self._proc.bind(payload.context)
        if steps:
            payload = self.process(payload, steps)
        await self.next.consume(payload)

    def process(self, payload: Payload, steps: list) -> Payload:  # type: ignore[type-arg]
        raw = payload.raw  # as received (cached): taken before the message is edited
        entries = resources(self.signal, payload.message)
        edited = {i: rs.resource for i, rs in enumerate(entries)
                  if apply(steps, rs.resource.attributes)}
        if not edited:
            return payload
        spliced = replace_resources(raw, {i: r.SerializeToString() for i, r in edited.items()})
        if spliced is None:  # bytes this cannot walk: serialize the edited message instead
            payload.mutable_message()
            return payload
        return Payload(self.signal, spliced, payload.message, payload.items, payload.context)
