"""The exporter as a component: Collector YAML, its HTTP endpoint, TLS, self-metrics."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporters.prometheus.config import PrometheusExporterConfig
from gateway import registry
from gateway.component import ComponentID, Host, Kind
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.payload import Payload
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from loadtests.gatewayproc import free_port
from tests.exporters.prometheus import SEC, Req

OPENSSL = shutil.which("openssl")
PIPELINE = """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}}
exporters:
  prometheus:
%s
service: {pipelines: {metrics: {receivers: [otlp], exporters: [prometheus]}}}
"""


def load(body: str) -> PrometheusExporterConfig:
    cfg = load_config_text(PIPELINE % body)
    config = cfg.exporters[ComponentID("prometheus")].config
    assert isinstance(config, PrometheusExporterConfig)
    return config


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if OPENSSL is None:
        pytest.skip("needs the openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True, timeout=30)
    return d / "cert.pem", d / "key.pem"


def test_factory_is_registered_for_metrics_only() -> None:
    factory = registry.lookup(Kind.EXPORTER, "prometheus")
    assert factory is not None and factory.signals == frozenset({Signal.METRICS})


def test_the_collector_readme_example_loads_unchanged(cert: tuple[Path, Path]) -> None:
    config = load(f"""
    endpoint: "1.2.3.4:1234"
    tls:
      cert_file: "{cert[0]}"
      key_file: "{cert[1]}"
    namespace: test-space
    const_labels:
      label1: value1
      "another label": spaced value
    send_timestamps: true
    metric_expiration: 180m
    enable_open_metrics: true
    add_metric_suffixes: false
    resource_to_telemetry_conversion:
      enabled: true
""")
    assert config.metric_expiration == 180 * 60 and config.send_timestamps
    assert config.const_labels == {"label1": "value1", "another label": "spaced value"}
    assert config.resource_to_telemetry_conversion.enabled and not config.add_metric_suffixes


def test_defaults_are_the_collectors() -> None:
    config = load('    endpoint: "0.0.0.0:8889"')
    assert (config.namespace, config.const_labels, config.send_timestamps,
            config.metric_expiration, config.enable_open_metrics, config.add_metric_suffixes,
            config.resource_to_telemetry_conversion.enabled, config.tls) == \
        ("", {}, False, 300.0, False, True, False, None)


@pytest.mark.parametrize(("body", "message"), [
    ("    namespace: x", "exporters::prometheus::endpoint: Field required"),
    ('    endpoint: ""', "endpoint is required"),
    ('    endpoint: "8889"', "invalid endpoint '8889'"),
    ('    endpoint: ":8889"\n    const_labels: {__name__: x}', "'__name__' is not a valid"),
    ('    endpoint: ":8889"\n    tls: {cert_file: /nope.pem, key_file: /nope.key}',
     "cert_file '/nope.pem' does not exist"),
    ('    endpoint: ":8889"\n    metric_expiration: soon', "invalid duration 'soon'"),
    ('    endpoint: ":8889"\n    translation_strategy: NoTranslation',
     "exporters::prometheus::translation_strategy: unknown key"),
])
def test_bad_configuration_says_what_is_wrong(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(body)
    assert message in str(info.value), str(info.value)


async def _running(config: dict[str, Any],
                   body: Callable[[Any, str, SelfTelemetry], Awaitable[None]]) -> None:
    factory = registry.lookup(Kind.EXPORTER, "prometheus")
    assert factory is not None
    port = free_port()
    cfg = factory.config_model.model_validate({"endpoint": f"127.0.0.1:{port}", **config})
    exporter = factory.create(ComponentID("prometheus", "test"), cfg)
    telemetry = SelfTelemetry()
    await exporter.start(Host(telemetry=telemetry))
    try:
        await body(exporter, f"127.0.0.1:{port}", telemetry)
    finally:
        await exporter.shutdown()


def payload(msg: Any) -> Payload:
    return Payload.from_message(Signal.METRICS, msg)


def test_scrape_endpoint_content_negotiation_gzip_and_self_metrics() -> None:
    async def body(exporter: Any, addr: str, telemetry: SelfTelemetry) -> None:
        await exporter.consume(payload(Req().sum("orders", 3, t=SEC)))
        exp = Req()
        exp.metric("payload.size", "By").exponential_histogram.data_points.add(count=1)
        await exporter.consume(payload(exp.msg))
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            async with http.get(f"http://{addr}/metrics",
                                headers={"Accept-Encoding": "identity"}) as r:
                assert r.status == 200 and "Content-Encoding" not in r.headers
                assert r.headers["Content-Type"] == \
                    "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
                text = await r.text()
            assert 'orders_total{instance="pod-1",job="checkout"} 3\n' in text
            om_accept = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            async with http.get(f"http://{addr}/metrics", headers={
                    "Accept": om_accept, "Accept-Encoding": "gzip"}) as r:
                assert r.headers["Content-Type"].startswith(
                    "application/openmetrics-text; version=1.0.0")
                assert r.headers["Content-Encoding"] == "gzip"
                om = gzip.decompress(await r.read()).decode()
            assert om.endswith("# EOF\n") and "orders_total" in om
            async with http.get(f"http://{addr}/other") as r:
                assert r.status == 404
        own = telemetry.exposition()[0].decode()
        assert 'otelcol_exporter_sent_metric_points_total{exporter="prometheus/test"} 2.0' in own
        assert ('otelgw_exporter_prometheus_dropped_metric_points_total{exporter="prometheus/test"'
                ',reason="unsupported_type"} 1.0') in own

    asyncio.run(_running({"enable_open_metrics": True}, body))


def test_openmetrics_only_when_enabled() -> None:
    async def body(exporter: Any, addr: str, telemetry: SelfTelemetry) -> None:
        await exporter.consume(payload(Req().sum("orders", 3)))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{addr}/metrics", headers={
                    "Accept": "application/openmetrics-text;version=1.0.0"}) as r:
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                assert "# EOF" not in await r.text()

    asyncio.run(_running({}, body))


def test_https_with_the_configured_certificate(cert: tuple[Path, Path]) -> None:
    async def body(exporter: Any, addr: str, telemetry: SelfTelemetry) -> None:
        await exporter.consume(payload(Req().gauge("temperature", 21.5, unit="Cel")))
        trust = ssl.create_default_context(cafile=str(cert[0]))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://{addr}/metrics", ssl=trust) as r:
                assert 'temperature_celsius{instance="pod-1",job="checkout"} 21.5' in \
                    await r.text()
            with pytest.raises(aiohttp.ClientError):  # plain http on a TLS port
                async with http.get(f"http://{addr}/metrics") as r:
                    await r.read()

    asyncio.run(_running({"tls": {"cert_file": str(cert[0]), "key_file": str(cert[1])}}, body))


def test_odd_input_never_fails_a_batch() -> None:
    async def body(exporter: Any, addr: str, telemetry: SelfTelemetry) -> None:
        req = Req()
        req.histogram("short", [1, 2, 3], [4], 1.0)  # fewer counts than bounds
        req.metric("empty")  # no data at all
        req.sum("fine", 1)
        await exporter.consume(payload(req.msg))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{addr}/metrics") as r:
                text = await r.text()
        assert 'short_seconds_bucket{instance="pod-1",job="checkout",le="3"} 4' in text
        assert 'fine_total{instance="pod-1",job="checkout"} 1' in text

    asyncio.run(_running({}, body))


def test_a_large_batch_of_many_resources_is_taken_whole() -> None:
    async def body(exporter: Any, addr: str, telemetry: SelfTelemetry) -> None:
        msg = Req({"service.name": "svc", "service.instance.id": "pod-0"}).msg
        for pod in range(3):
            rm = msg.resource_metrics[0] if pod == 0 else msg.resource_metrics.add()
            if pod:
                rm.CopyFrom(msg.resource_metrics[0])
                rm.resource.attributes[1].value.string_value = f"pod-{pod}"
                continue
            m = rm.scope_metrics[0].metrics.add(name="hits")
            m.sum.aggregation_temporality, m.sum.is_monotonic = 2, True
            for i in range(1000):
                dp = m.sum.data_points.add(as_int=i, time_unix_nano=SEC)
                dp.attributes.add(key="i").value.string_value = str(i)
        await exporter.consume(payload(msg))  # 3000 points: taken a resource at a time
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{addr}/metrics") as r:
                text = await r.text()
        assert sum(1 for line in text.splitlines() if line.startswith("hits_total{")) == 3000
        assert 'hits_total{i="999",instance="pod-2",job="svc"} 999' in text

    asyncio.run(_running({}, body))


def test_port_in_use_fails_start() -> None:
    async def main() -> None:
        factory = registry.lookup(Kind.EXPORTER, "prometheus")
        assert factory is not None
        blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = blocker.sockets[0].getsockname()[1]
        cfg = factory.config_model.model_validate({"endpoint": f"127.0.0.1:{port}"})
        exporter = factory.create(ComponentID("prometheus"), cfg)
        try:
            with pytest.raises(OSError):
                await exporter.start(Host(telemetry=SelfTelemetry()))
            await exporter.shutdown()  # safe after a failed start
        finally:
            blocker.close()
            await blocker.wait_closed()

    asyncio.run(main())
