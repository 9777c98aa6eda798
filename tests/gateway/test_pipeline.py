"""Fan-out to several pipelines: a consumer that edits data never changes what the others see."""

from __future__ import annotations

import asyncio

from gateway.payload import Payload
from gateway.pipeline import Fanout
from gateway.signals import Signal
from loadtests import payloads


class Reader:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def consume(self, payload: Payload) -> None:
        await asyncio.sleep(0.01)  # the editor runs meanwhile
        res = payload.message.resource_spans[0].resource
        self.seen.append(next(kv.value.string_value for kv in res.attributes
                              if kv.key == "k8s.cluster.name"))


class Editor:
    async def consume(self, payload: Payload) -> None:
        res = payload.mutable_message().resource_spans[0].resource
        for kv in res.attributes:
            if kv.key == "k8s.cluster.name":
                kv.value.string_value = "edited"


def test_mutating_consumers_get_copies_wherever_they_stand() -> None:
    for order in ("editor-last", "editor-first"):
        reader = Reader()
        pairs = [(reader, False), (Editor(), True)]
        fan = Fanout(pairs if order == "editor-last" else pairs[::-1])
        message = payloads.traces(10, cluster="original")
        asyncio.run(fan.consume(Payload.from_message(Signal.TRACES, message)))
        assert reader.seen == ["original"], order
