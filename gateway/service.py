"""Runs a configured gateway: self-telemetry endpoint, pipeline graph, signals, graceful stop.

SIGTERM / SIGINT: receivers stop accepting and finish requests in flight, batches flush to the
exporters, exporters finish their inserts, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway.component import Lifecycle
from gateway.config.loader import GatewayConfig
from gateway.endpoints import split_host_port
from gateway.pipeline import Graph
from gateway.telemetry import SelfTelemetry

log = logging.getLogger(__name__)


class Service:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.telemetry = SelfTelemetry()
        self.graph = Graph(cfg, self.telemetry)
        self._metrics_runner: web.AppRunner | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        metrics = self.cfg.service.telemetry.metrics
        if metrics.level != "none":
            await self._serve_metrics(metrics.address)
        await self.graph.start()
        self.graph.host.status.set(Lifecycle.READY)
        log.info("otelgw is running: %d pipeline(s): %s", len(self.cfg.pipelines),
                 ", ".join(str(p) for p in self.cfg.pipelines))

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
        await self.graph.shutdown()
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
