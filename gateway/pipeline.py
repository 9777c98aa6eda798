"""Build the pipeline graph from the service config and run its lifecycle.

Downstream components start first (exporters, then processors, then receivers) and shutdown runs
the other way, so every queue upstream of a component drains into it before it stops.
Receivers and exporters are shared by all pipelines that name them; processors are one instance
per pipeline, as in the Collector.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from gateway.component import ComponentID, Consumer, Host
from gateway.config.loader import ComponentSpec, GatewayConfig
from gateway.payload import Payload
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry

log = logging.getLogger(__name__)


class Fanout:
    """Hands one payload to several consumers; each one that mutates gets its own copy.

    The consumers run concurrently, so a mutating consumer must never edit the message the
    others read, not even the last one.
    """

    def __init__(self, consumers: list[tuple[Consumer, bool]]) -> None:
        self._consumers = consumers

    async def consume(self, payload: Payload) -> None:
        if len(self._consumers) == 1:
            await self._consumers[0][0].consume(payload)
            return
        calls = []
        for consumer, mutates in self._consumers:
            item = payload
            if mutates:
                item = Payload(payload.signal, payload.raw, None, payload.items, payload.context)
            calls.append(consumer.consume(item))
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


class Graph:
    def __init__(self, cfg: GatewayConfig, telemetry: SelfTelemetry) -> None:
        self.cfg = cfg
        self.host = Host(telemetry=telemetry)
        self.extensions: dict[ComponentID, Any] = {}
        self.exporters: dict[ComponentID, Any] = {}
        self.processors: list[Any] = []  # in pipeline order, front to back
        self.receivers: dict[ComponentID, Any] = {}
        self._build()

    def _build(self) -> None:
        cfg = self.cfg
        for ref in cfg.service.extensions:
            spec = cfg.extensions[ComponentID.parse(ref)]
            self.extensions[spec.id] = spec.factory.create(spec.id, spec.config)
        entries: dict[ComponentID, dict[Signal, list[tuple[Consumer, bool]]]] = defaultdict(
            lambda: defaultdict(list))
        for pid, pipe in cfg.pipelines.items():
            signal = Signal(pid.type)
            targets = []
            for ref in pipe.exporters:
                spec = cfg.exporters[ComponentID.parse(ref)]
                if spec.id not in self.exporters:
                    self.exporters[spec.id] = spec.factory.create(spec.id, spec.config)
                targets.append((self.exporters[spec.id], False))
            nxt: Consumer = Fanout(targets)
            chain = []
            for ref in reversed(pipe.processors):
                spec = cfg.processors[ComponentID.parse(ref)]
                nxt = spec.factory.create(spec.id, spec.config, signal, nxt)
                chain.append(nxt)
            self.processors.extend(reversed(chain))
            first_mutates = bool(pipe.processors) and cfg.processors[
                ComponentID.parse(pipe.processors[0])].factory.mutates_data
            for ref in pipe.receivers:
                entries[ComponentID.parse(ref)][signal].append((nxt, first_mutates))
        for rid, by_signal in entries.items():
            spec: ComponentSpec = cfg.receivers[rid]
            consumers = {sig: Fanout(lst) for sig, lst in by_signal.items()}
            self.receivers[rid] = spec.factory.create(rid, spec.config, consumers)
        self.host.exporters = self.exporters
        self.host.extensions = self.extensions

    def _start_order(self) -> list[tuple[str, Any]]:
        return (
            [(f"extensions::{k}", v) for k, v in self.extensions.items()]
            + [(f"exporters::{k}", v) for k, v in self.exporters.items()]
            + [("processor", p) for p in reversed(self.processors)]
            + [(f"receivers::{k}", v) for k, v in self.receivers.items()]
        )

    async def start(self) -> None:
        started: list[Any] = []
        try:
            for name, comp in self._start_order():
                log.debug("starting %s", name)
                await comp.start(self.host)
                started.append(comp)
        except BaseException:
            for comp in reversed(started):
                await _safe_shutdown(comp)
            raise

    async def shutdown(self) -> None:
        """Receivers stop accepting while batches flush, so requests in flight are answered
        without waiting for a batch timeout; then exporters finish and stop."""
        receivers = [asyncio.ensure_future(_safe_shutdown(r)) for r in self.receivers.values()]
        await asyncio.sleep(0)  # let the listeners close before the first flush
        for proc in self.processors:
            await _safe_shutdown(proc)
        await asyncio.gather(*receivers)
        for proc in self.processors:  # what requests in flight handed over meanwhile
            await _safe_shutdown(proc)
        for comp in [*self.exporters.values(), *self.extensions.values()]:
            await _safe_shutdown(comp)


async def _safe_shutdown(comp: Any) -> None:
    try:
        await comp.shutdown()
    except Exception:  # shutdown of the rest must go on
        log.exception("error while shutting down %s", type(comp).__name__)


