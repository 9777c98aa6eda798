"""A real gateway (otlp → batch → [clickhouse, prometheus]) fed by the OpenTelemetry SDK: the
exporter's /metrics shows what was sent, ClickHouse holds the same data (dual write), promtool
finds nothing to lint, and a real Prometheus scraping the exporter reads the same values."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from loadtests.gatewayproc import Gateway, default_config, free_port, stop_process
from tests.exporters.prometheus import samples

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
RESOURCE = {"service.name": "checkout", "service.namespace": "shop",
            "service.instance.id": "pod-1", "k8s.pod.name": "checkout-7d9f-abc12"}
DURATIONS = [0.003, 0.2, 7.0, 42.0]
SIZES = [[10], [1000, 20]]  # recorded by the delta histogram, one list per export
LABELS = 'instance="pod-1",job="shop/checkout"'


def _reader(gw: Gateway, delta: bool = False) -> PeriodicExportingMetricReader:
    temporality = ({Counter: AggregationTemporality.DELTA,
                    Histogram: AggregationTemporality.DELTA} if delta else None)
    exporter = OTLPMetricExporter(endpoint=gw.grpc_endpoint, insecure=True,
                                  preferred_temporality=temporality)
    return PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)


def _send_cumulative(gw: Gateway) -> None:
    provider = MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[_reader(gw)])
    meter = provider.get_meter("shop.meter", "1.0")
    orders = meter.create_counter("orders", unit="{order}", description="Orders placed.")
    orders.add(5, {"region": "eu"})
    orders.add(7, {"region": "eu"})
    orders.add(1, {"region": "us"})
    meter.create_up_down_counter("queue.depth", unit="{item}",
                                 description="Items waiting.").add(-3)
    duration = meter.create_histogram("checkout.duration", unit="s",
                                      description="Checkout latency.")
    for v in DURATIONS:
        duration.record(v, {"route": "/cart"})
    meter.create_observable_gauge("room.temperature", unit="Cel", description="Temperature.",
                                  callbacks=[lambda _: [Observation(21.5, {"room": "a"})]])
    provider.shutdown()


def _send_delta(gw: Gateway) -> None:
    resource = Resource.create({"service.name": "batcher", "service.instance.id": "b-1"})
    provider = MeterProvider(resource=resource, metric_readers=[_reader(gw, delta=True)])
    meter = provider.get_meter("batch.meter")
    jobs = meter.create_counter("jobs", description="Jobs run.")
    size = meter.create_histogram("job.size", unit="By", description="Job sizes.")
    for n, values in zip((2, 3), SIZES):
        jobs.add(n)
        for v in values:
            size.record(v)
        provider.force_flush()  # one export per round: the exporter must add the deltas
    provider.shutdown()


def _scrape(url: str, accept: str = "text/plain;version=0.0.4") -> str:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    workdir = tmp_path_factory.mktemp("prom-e2e")
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics", "prom")}
    cfg = default_config(workdir / "data", ports)
    cfg["exporters"]["prometheus"] = {"endpoint": f"127.0.0.1:{ports['prom']}",
                                      "enable_open_metrics": True}
    cfg["service"]["pipelines"]["metrics"]["exporters"] = ["clickhouse", "prometheus"]
    gw = Gateway(workdir, cfg, ports).start()
    url = f"http://127.0.0.1:{ports['prom']}/metrics"
    try:
        _send_cumulative(gw)
        _send_delta(gw)
        deadline = time.monotonic() + 15
        while "job_size_bytes_count" not in _scrape(url) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield gw, url
    finally:
        code = gw.stop()
        assert code == 0, gw.logs()[-3000:]


def _cumulative(bounds: list[float], values: list[float]) -> list[int]:
    return [sum(1 for v in values if v <= b) for b in bounds]


def _bounds(gw: Gateway, name: str) -> list[float]:
    gw.wait_count("otel_metrics_histogram", 1, f"MetricName = '{name}'")  # ack = in the log
    (row,) = gw.rows(f"SELECT ExplicitBounds FROM otel_metrics_histogram "
                     f"WHERE MetricName = '{name}' LIMIT 1")
    return [float(b) for b in row["ExplicitBounds"]]


def test_exposition_shows_what_the_sdk_sent(stack: tuple[Gateway, str]) -> None:
    gw, url = stack
    text = _scrape(url)
    got = samples(text)
    assert got[f'orders_total{{{LABELS},region="eu"}}'] == "12"
    assert got[f'orders_total{{{LABELS},region="us"}}'] == "1"
    assert got[f"queue_depth{{{LABELS}}}"] == "-3"
    assert got[f'room_temperature_celsius{{{LABELS},room="a"}}'] == "21.5"
    assert "# HELP orders_total Orders placed.\n# TYPE orders_total counter\n" in text
    assert "# TYPE queue_depth gauge\n" in text
    assert "# TYPE checkout_duration_seconds histogram\n" in text
    bounds = _bounds(gw, "checkout.duration")  # the SDK's default boundaries, as stored
    assert len(bounds) > 5
    hist = f'{LABELS},route="/cart"'
    assert [int(got[f'checkout_duration_seconds_bucket{{{hist},le="{b:g}"}}'])
            for b in bounds] == _cumulative(bounds, DURATIONS)
    assert got[f'checkout_duration_seconds_bucket{{{hist},le="+Inf"}}'] == str(len(DURATIONS))
    assert float(got[f"checkout_duration_seconds_sum{{{hist}}}"]) == pytest.approx(
        sum(DURATIONS))
    assert got[f"checkout_duration_seconds_count{{{hist}}}"] == str(len(DURATIONS))


def test_delta_temporality_is_accumulated(stack: tuple[Gateway, str]) -> None:
    gw, url = stack
    got = samples(_scrape(url))
    assert got['jobs_total{instance="b-1",job="batcher"}'] == "5"
    values = [v for round_ in SIZES for v in round_]
    bounds = _bounds(gw, "job.size")
    assert [int(got[f'job_size_bytes_bucket{{instance="b-1",job="batcher",le="{b:g}"}}'])
            for b in bounds] == _cumulative(bounds, values)
    assert got['job_size_bytes_sum{instance="b-1",job="batcher"}'] == f"{sum(values):g}"
    assert got['job_size_bytes_count{instance="b-1",job="batcher"}'] == str(len(values))


def test_target_info_carries_the_other_resource_attributes(stack: tuple[Gateway, str]) -> None:
    _, url = stack
    info = [line for line in _scrape(url).splitlines() if line.startswith("target_info{")]
    assert len(info) == 2
    (checkout,) = [line for line in info if 'job="shop/checkout"' in line]
    assert 'instance="pod-1"' in checkout and 'k8s_pod_name="checkout-7d9f-abc12"' in checkout
    assert 'telemetry_sdk_language="python"' in checkout and "service_name" not in checkout


def test_clickhouse_has_the_same_data(stack: tuple[Gateway, str]) -> None:
    gw, _ = stack
    assert gw.wait_count("otel_metrics_sum", 5) >= 5
    gw.wait_count("otel_metrics_sum", 2, "ServiceName = 'batcher' AND MetricName = 'jobs' "
                  "AND AggregationTemporality = 1")
    sums = {(r["MetricName"], r["Attributes"].get("region", "")): r for r in gw.rows(
        "SELECT MetricName, Attributes, Value, AggregationTemporality FROM otel_metrics_sum "
        "WHERE ServiceName = 'checkout' ORDER BY TimeUnix")}
    assert sums[("orders", "eu")]["Value"] == 12 and sums[("orders", "us")]["Value"] == 1
    assert sums[("queue.depth", "")]["Value"] == -3
    deltas = gw.rows("SELECT Value FROM otel_metrics_sum WHERE ServiceName = 'batcher' "
                     "AND MetricName = 'jobs' AND AggregationTemporality = 1 ORDER BY TimeUnix")
    assert [r["Value"] for r in deltas] == [2, 3]  # stored as sent; exposed as 5
    # one INSERT feeds every metrics table, but each table's part becomes visible on its own
    checkout = "ServiceName = 'checkout' AND MetricName = "
    gw.wait_count("otel_metrics_histogram", 1, checkout + "'checkout.duration'")
    gw.wait_count("otel_metrics_gauge", 1, checkout + "'room.temperature'")
    (hist,) = gw.rows("SELECT Count, Sum, BucketCounts FROM otel_metrics_histogram "
                      "WHERE ServiceName = 'checkout' AND MetricName = 'checkout.duration'")
    assert int(hist["Count"]) == len(DURATIONS) and hist["Sum"] == pytest.approx(sum(DURATIONS))
    (gauge,) = gw.rows("SELECT Value, ResourceAttributes FROM otel_metrics_gauge "
                       "WHERE ServiceName = 'checkout' AND MetricName = 'room.temperature'")
    assert gauge["Value"] == 21.5
    assert gauge["ResourceAttributes"]["k8s.pod.name"] == "checkout-7d9f-abc12"


def test_openmetrics_when_the_scraper_asks(stack: tuple[Gateway, str]) -> None:
    _, url = stack
    om = _scrape(url, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert om.endswith("# EOF\n")
    assert "# TYPE orders counter\n" in om
    assert f'orders_total{{{LABELS},region="eu"}} 12.0\n' in om


@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian package prometheus)")
def test_promtool_check_metrics_is_clean(stack: tuple[Gateway, str]) -> None:
    _, url = stack
    out = subprocess.run([PROMTOOL or "", "check", "metrics"], input=_scrape(url).encode(),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == b"" and out.stderr == b"", out


def _query(base: str, promql: str) -> list[Any]:
    with urllib.request.urlopen(f"{base}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}), timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.mark.skipif(PROMETHEUS is None, reason="needs prometheus (Debian package prometheus)")
def test_a_real_prometheus_scrapes_the_same_values(stack: tuple[Gateway, str],
                                                   tmp_path: Path) -> None:
    _, url = stack
    target = urllib.parse.urlparse(url).netloc
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": [{
        "job_name": "otelgw", "scrape_interval": "1s", "scrape_timeout": "1s",
        "honor_labels": True, "static_configs": [{"targets": [target]}]}]}))
    prom = subprocess.Popen([PROMETHEUS or "", f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wanted = {f'orders_total{{{LABELS},region="eu"}}': 12.0,
              f'checkout_duration_seconds_count{{{LABELS},route="/cart"}}': 4.0,
              'jobs_total{job="batcher",instance="b-1"}': 5.0,
              f'target_info{{{LABELS},k8s_pod_name="checkout-7d9f-abc12"}}': 1.0}
    got: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(got) < len(wanted):
            time.sleep(0.5)
            try:
                for promql in set(wanted) - set(got):
                    result = _query(base, promql)
                    if result:
                        got[promql] = float(result[0]["value"][1])
            except OSError:  # not listening yet
                continue
    finally:
        stop_process(prom, timeout=10)
    assert got == wanted
