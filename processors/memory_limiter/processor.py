"""Refuses data while the process is over its memory limit, so receivers push back on clients
(HTTP 429 / gRPC RESOURCE_EXHAUSTED with a retry delay) instead of the gateway being OOM-killed.

The check on the hot path is one attribute read; the measuring happens on the shared limiter's
own thread (limiter.py). Data is passed on unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter

from gateway.component import ComponentID, Consumer, Host
from gateway.errors import RefusedError
from gateway.payload import Payload
from gateway.signals import Signal
from processors.memory_limiter.config import MemoryLimiterConfig
from processors.memory_limiter.limiter import MemoryLimiter, shared_limiter

log = logging.getLogger(__name__)


class _Uncounted:
    """Stands in for the counters until start() gives the telemetry."""

    def inc(self, amount: float = 1) -> None:
        pass


class MemoryLimiterProcessor:
    def __init__(self, cid: ComponentID, cfg: MemoryLimiterConfig, signal: Signal,
                 nxt: Consumer, limiter: MemoryLimiter | None = None) -> None:
        self.id = cid
        self.cfg = cfg
        self.signal = signal
        self.next = nxt
        self.limiter = limiter or shared_limiter(cfg)
        # clients come back after a check had the chance to see memory fall
        self.retry_after = max(1.0, cfg.check_interval)
        self._accepted: Any = _Uncounted()
        self._refused: Any = _Uncounted()
        self._started = False

    async def start(self, host: Host) -> None:
        # the process RSS is reported once, by gateway/process_metrics.py
        self._accepted, self._refused = _counters(host, str(self.id), self.signal)
        self.limiter.start()
        self._started = True

    async def shutdown(self) -> None:
        # the pipeline may call this twice; the shared check is released once per start
        if self._started:
            self._started = False
            self.limiter.stop()

    async def consume(self, payload: Payload) -> None:
        if self.limiter.refusing:
            self._refused.inc(payload.items)
            raise RefusedError(self.limiter.refusal, retry_after=self.retry_after)
        # counted as accepted even when the next stage fails, as the Collector does
        self._accepted.inc(payload.items)
        await self.next.consume(payload)


def _counters(host: Host, processor: str, signal: Signal) -> tuple[Any, Any]:
    """The Collector's (deprecated but still emitted) processor counters for this signal."""
    item = signal.item_name
    words = item.replace("_", " ")
    accepted = host.telemetry.metric(
        Counter, f"otelcol_processor_accepted_{item}",
        f"Number of {words} successfully pushed into the next component in the pipeline.",
        ["processor"])
    refused = host.telemetry.metric(
        Counter, f"otelcol_processor_refused_{item}",
        f"Number of {words} that were rejected by the next component in the pipeline.",
        ["processor"])
    return accepted.labels(processor=processor), refused.labels(processor=processor)

