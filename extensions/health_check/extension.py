"""The `health_check` extension: 200 while the gateway serves, 503 while starting or draining.

Extensions start before the pipelines and stop after them, so a probe sees 503 from the first
moment the port is open until every receiver listens, and again from SIGTERM until exit — what a
Kubernetes readiness probe needs to take the pod out of rotation before it drains.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

from aiohttp import web

from extensions.health_check.config import HealthCheckConfig
from gateway.component import ComponentID, Host, Lifecycle, Status
from gateway.endpoints import split_host_port

log = logging.getLogger(__name__)


class HealthCheck:
    def __init__(self, cid: ComponentID, cfg: HealthCheckConfig) -> None:
        self.id = cid
        self.cfg = cfg
        self._status: Status | None = None
        self._runner: web.AppRunner | None = None
        self._up_since = 0.0

    async def start(self, host: Host) -> None:
        self._status = host.status
        app = web.Application()
        app.router.add_get(self.cfg.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, *split_host_port(self.cfg.endpoint)).start()
        log.info("health check on http://%s%s", self.cfg.endpoint, self.cfg.path)

    def _body(self, healthy: bool) -> tuple[str, str]:
        custom = self.cfg.response_body
        if custom is not None:
            return (custom.healthy if healthy else custom.unhealthy), "text/plain"
        if healthy:
            since = datetime.fromtimestamp(self._status.since if self._status else 0, timezone.utc)
            doc = {"status": "Server available", "upSince": since.isoformat(),
                   "uptime": f"{time.time() - since.timestamp():.3f}s"}
        else:
            doc = {"status": "Server not available", "upSince": "0001-01-01T00:00:00Z",
                   "uptime": ""}
        return json.dumps(doc), "application/json"

    async def _handle(self, _: web.Request) -> web.Response:
        healthy = self._status is not None and self._status.state is Lifecycle.READY
        body, ctype = self._body(healthy)
        return web.Response(status=200 if healthy else 503, text=body, content_type=ctype)

    async def shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
