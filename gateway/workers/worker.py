"""A worker process: the push receivers and their processors, handing batches to the owner.

Started by the owner as `otelgw run --config … --worker-index K --owner-socket PATH`. It stops
(draining: listeners close, requests in flight are answered) on SIGTERM / SIGINT, when the owner
dies (PR_SET_PDEATHSIG) or when the handover socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal

from gateway.config.loader import GatewayConfig
from gateway.pipeline import Graph
from gateway.telemetry import SelfTelemetry
from gateway.workers import share_ports
from gateway.workers.handover import HandoverExporter, OwnerLink
from gateway.workers.plan import handover_factory, worker_config

log = logging.getLogger(__name__)

METRICS_INTERVAL = 1.0  # seconds between self-metric snapshots sent to the owner
_PR_SET_PDEATHSIG = 1


def _die_with_owner() -> None:
    """SIGTERM when the owner exits, however it exits (Linux); elsewhere the socket closing
    does the same, a moment later."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _Tagged(logging.Filter):
    """Worker log lines say which worker wrote them."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.tag = f"[worker {worker}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.tag):
            record.name = self.tag + record.name
        return True


async def run_worker(cfg: GatewayConfig, worker: int, socket_path: str) -> None:
    _die_with_owner()
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Tagged(worker))
    share_ports(os.getppid())  # the owner starts its workers itself
    stop = asyncio.Event()

    def owner_gone() -> None:
        if not stop.is_set():
            log.warning("worker %d: the owner closed the handover connection; stopping", worker)
            stop.set()

    link = OwnerLink(socket_path, worker, on_lost=owner_gone)
    factory = handover_factory(lambda cid, c: HandoverExporter(cid, c.pipeline, c.exporters, link))
    telemetry = SelfTelemetry()
    graph = Graph(worker_config(cfg, worker, factory), telemetry)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await link.connect()
    await graph.start()
    try:
        await link.ready()
        log.info("worker %d (pid %d) is listening: %d pipeline(s)", worker, os.getpid(),
                 len(graph.cfg.pipelines))
        reporter = asyncio.create_task(_report(link, telemetry))
        await stop.wait()
        log.info("worker %d is draining", worker)
    finally:
        await graph.shutdown()
    reporter.cancel()
    await link.send_metrics(telemetry.snapshot())  # the last counts, after the drain
    await link.close()
    log.info("worker %d stopped", worker)


async def _report(link: OwnerLink, telemetry: SelfTelemetry) -> None:
    while True:
        await asyncio.sleep(METRICS_INTERVAL)
        await link.send_metrics(telemetry.snapshot())
