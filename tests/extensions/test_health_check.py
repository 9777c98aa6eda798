"""health_check: 503 while starting, 200 while serving, 503 while draining; Collector bodies."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import yaml

from extensions.health_check.config import HealthCheckConfig
from extensions.health_check.extension import HealthCheck
from gateway.component import ComponentID, Host, Lifecycle
from gateway.telemetry import SelfTelemetry
from loadtests.gatewayproc import Gateway, free_port


def test_states_and_bodies() -> None:
    async def run() -> list[tuple[int, str]]:
        port = free_port()
        host = Host(telemetry=SelfTelemetry())
        ext = HealthCheck(ComponentID("health_check"),
                          HealthCheckConfig(endpoint=f"127.0.0.1:{port}", path="/health"))
        await ext.start(host)
        seen = []
        try:
            async with aiohttp.ClientSession() as session:
                for state in (None, Lifecycle.READY, Lifecycle.DRAINING):
                    if state is not None:
                        host.status.set(state)
                    async with session.get(f"http://127.0.0.1:{port}/health") as r:
                        seen.append((r.status, await r.text()))
                async with session.get(f"http://127.0.0.1:{port}/") as r:
                    assert r.status == 404  # only the configured path
        finally:
            await ext.shutdown()
        return seen

    (s1, b1), (s2, b2), (s3, b3) = asyncio.run(run())
    assert (s1, json.loads(b1)["status"]) == (503, "Server not available")
    assert (s2, json.loads(b2)["status"]) == (200, "Server available")
    assert json.loads(b2)["upSince"].startswith("20")
    assert (s3, json.loads(b3)["status"]) == (503, "Server not available")


def test_custom_bodies() -> None:
    cfg = HealthCheckConfig.model_validate(
        {"response_body": {"healthy": "ok", "unhealthy": "not yet"}})
    ext = HealthCheck(ComponentID("health_check"), cfg)
    assert ext._body(True) == ("ok", "text/plain")
    assert ext._body(False) == ("not yet", "text/plain")


def test_gateway_serves_health_check(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    port = free_port()
    gw.config["extensions"] = {"health_check": {"endpoint": f"127.0.0.1:{port}"}}
    gw.config["service"]["extensions"] = ["health_check"]
    gw.config_path.write_text(yaml.safe_dump(gw.config))
    gw.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
            assert json.loads(r.read())["status"] == "Server available"
    finally:
        assert gw.stop() == 0
    with pytest.raises(urllib.error.URLError):  # closed with the gateway
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
