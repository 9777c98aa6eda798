"""Runs a configured gateway: self-telemetry endpoint, pipeline graph, signals, graceful stop.

SIGTERM / SIGINT: receivers stop accepting and finish requests in flight, batches flush to the
exporters, exporters finish their inserts, then the process exits 0. With --workers N the worker
processes drain first (gateway/workers), while this process still takes their batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from aiohttp import web

from gateway.component import Lifecycle
from gateway.config.loader import GatewayConfig
from gateway.endpoints import split_host_port
from gateway.pipeline import Graph, _safe_shutdown
from gateway.telemetry import SelfTelemetry
from gateway.workers import plan, share_ports
from gateway.workers.supervisor import Supervisor

log = logging.getLogger(__name__)


class Service:
    def __init__(self, cfg: GatewayConfig, workers: int = 1, config_path: str = "") -> None:
        self.cfg = cfg
        self.workers = workers
        self.config_path = config_path
        self.telemetry = SelfTelemetry()
        self.graph = Graph(cfg, self.telemetry)
        self.supervisor: Supervisor | None = None
        self._adopted: list[Any] = []
        self._metrics_runner: web.AppRunner | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        if self.workers > 1 and not plan.shared_endpoints(self.cfg):
            log.warning("--workers %d: no pipeline has a push receiver on a TCP port (otlp, "
                        "fluentforward) for other processes to share; running one process",
                        self.workers)
            self.workers = 1
        if self.workers > 1:
            plan.check_ports(self.cfg)  # before anything listens: fail as one process would
            share_ports(os.getpid())
        metrics = self.cfg.service.telemetry.metrics
        if metrics.level != "none":
            await self._serve_metrics(metrics.address)
        await self.graph.start()
        try:
            await self._adopt_orphan_queues()
            if self.workers > 1:
                self.supervisor = Supervisor(self.config_path, self.workers,
                                             self.graph.exporters, self.telemetry)
                await self.supervisor.start()
        except BaseException:
            await self.shutdown()
            raise
        self.graph.host.status.set(Lifecycle.READY)
        log.info("otelgw is running: %d pipeline(s): %s%s", len(self.cfg.pipelines),
                 ", ".join(str(p) for p in self.cfg.pipelines),
                 f"; {self.workers} processes share the receivers' ports"
                 if self.workers > 1 else "")

    async def _adopt_orphan_queues(self) -> None:
        """Sending queues of workers that no longer exist (fewer --workers than last time) are
        drained into ClickHouse by an extra instance of their exporter here."""
        for spec, path in plan.orphan_queues(self.cfg, self.workers):
            log.warning("exporter %s: draining the sending queue %s left by a former worker",
                        spec.id, path)
            exporter = spec.factory.create(spec.id, spec.config)
            await exporter.start(self.graph.host)
            self._adopted.append(exporter)

    async def _serve_metrics(self, address: str) -> None:
        async def handle(_: web.Request) -> web.Response:
            body, ctype = self.telemetry.exposition()
            return web.Response(body=body, headers={"Content-Type": ctype})

        app = web.Application()
        app.router.add_get("/metrics", handle)
        self._metrics_runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._metrics_runner.setup()
        await web.TCPSite(self._metrics_runner, *split_host_port(address)).start()
        log.info("self-telemetry: Prometheus metrics on http://%s/metrics", address)

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        log.info("otelgw is shutting down: draining receivers, batches and exporters")
        self.graph.host.status.set(Lifecycle.DRAINING)
        if self.supervisor is not None:
            await self.supervisor.stop()
        await self.graph.shutdown()
        for exporter in self._adopted:
            await _safe_shutdown(exporter)
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        log.info("otelgw stopped")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
