"""The receiver component in process: discovery → targets → loops → the pipeline.

A capturing consumer stands in for the pipeline (it can refuse, as memory_limiter or a full
queue does); targets are real HTTP servers on loopback; discovery is real file_sd or a
discoverer the test feeds, as kubernetes_sd would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.component import ComponentID, Host
from gateway.errors import RefusedError
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from receivers.prometheus.config import PrometheusReceiverConfig
from receivers.prometheus.discovery import TargetGroup
from receivers.prometheus.discovery import file as file_sd
from receivers.prometheus import receiver as receiver_mod
from receivers.prometheus.receiver import PrometheusReceiver, ScrapePool
from tests.receivers.prometheus.test_scrape_loop import TargetServer, attrs, body


class Sink:
    """The pipeline: keeps what it takes; `refuse` makes it refuse the next N pushes."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.refuse = 0

    async def consume(self, payload: Any) -> None:
        if self.refuse:
            self.refuse -= 1
            raise RefusedError("memory limit reached", retry_after=0.05)
        self.got.append(payload.message)

    def points(self, name: str, **where: str) -> list[tuple[dict[str, str], Any]]:
        out = []
        for req in self.got:
            for rm in req.resource_metrics:
                res = attrs(rm.resource.attributes)
                if any(res.get(k) != v for k, v in where.items()):
                    continue
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name == name:
                            kind = m.WhichOneof("data")
                            out.extend((res, p) for p in getattr(m, kind).data_points)
        return out


@pytest.fixture(scope="module")
def server() -> Iterator[TargetServer]:
    srv = TargetServer().start()
    yield srv
    srv.stop()


async def _run(cfg: dict[str, Any], sink: Sink, seconds: float,
               during: Callable[[PrometheusReceiver], Any] | None = None,
               telemetry: SelfTelemetry | None = None) -> PrometheusReceiver:
    rc = PrometheusReceiverConfig.model_validate(cfg)
    rec = PrometheusReceiver(ComponentID("prometheus", "t"), rc, {Signal.METRICS: sink})
    await rec.start(Host(telemetry=telemetry or SelfTelemetry()))
    try:
        if during is not None:
            await during(rec)
        else:
            await asyncio.sleep(seconds)
    finally:
        await rec.shutdown()
    return rec


def _job(server: TargetServer, path: str, **kw: Any) -> dict[str, Any]:
    return {"config": {"scrape_configs": [{
        "job_name": "j", "scrape_interval": "500ms", "scrape_timeout": "300ms",
        "static_configs": [{"targets": [server.address], "labels": {"__metrics_path__": path}}],
        **kw}]}}


def _metric_value(tel: SelfTelemetry, name: str, **labels: str) -> float | None:
    return tel.registry.get_sample_value(name, labels)


def test_refused_push_is_retried_within_the_interval(server: TargetServer) -> None:
    server.routes["/r1"] = body("m 1\n")
    sink, tel = Sink(), SelfTelemetry()
    sink.refuse = 2  # the first push is refused twice, then taken
    asyncio.run(_run(_job(server, "/r1"), sink, 1.3, telemetry=tel))
    assert sink.points("m") and sink.points("up")
    labels = {"receiver": "prometheus/t", "transport": "http"}
    assert _metric_value(tel, "otelcol_receiver_refused_metric_points_total", **labels) is None
    assert (_metric_value(tel, "otelcol_receiver_accepted_metric_points_total", **labels)
            or 0) >= 6


def test_refused_until_the_next_scrape_is_counted_and_logged(
        server: TargetServer, caplog: pytest.LogCaptureFixture) -> None:
    server.routes["/r2"] = body("m 1\n")
    sink, tel = Sink(), SelfTelemetry()
    sink.refuse = 10**6
    with caplog.at_level(logging.WARNING):
        asyncio.run(_run(_job(server, "/r2"), sink, 1.5, telemetry=tel))
    labels = {"receiver": "prometheus/t", "transport": "http"}
    refused = _metric_value(tel, "otelcol_receiver_refused_metric_points_total", **labels)
    assert refused is not None and refused >= 6  # m + 5 synthetic series per scrape
    assert refused % 6 == 0
    assert any("refused the scrape of" in r.getMessage() and "/r2" in r.getMessage()
               and "memory limit" in r.getMessage() for r in caplog.records)


def test_target_health_self_metrics(server: TargetServer) -> None:
    server.routes["/h_ok"] = body("m 1\n")
    tel = SelfTelemetry()
    cfg = _job(server, "/h_ok")
    cfg["config"]["scrape_configs"][0]["static_configs"].append(
        {"targets": [server.address], "labels": {"__metrics_path__": "/h_missing",
                                                 "instance": "missing"}})
    asyncio.run(_run(cfg, Sink(), 1.2, telemetry=tel))
    base = {"receiver": "prometheus/t", "job": "j"}
    assert _metric_value(tel, "otelgw_prometheus_target_up",
                         instance=server.address, **base) == 1
    assert _metric_value(tel, "otelgw_prometheus_target_up", instance="missing", **base) == 0
    assert (_metric_value(tel, "otelgw_prometheus_target_scrapes_failed_total",
                          instance="missing", **base) or 0) >= 1
    assert _metric_value(tel, "otelgw_prometheus_targets", receiver="prometheus/t",
                         job="j") == 2


def test_file_sd_targets_follow_the_file(server: TargetServer, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_sd, "WATCH_PERIOD", 0.1)
    # Prometheus throttles target syncs (5 s; ours 1 s); the unlink below comes right after the
    # sync that started /fb, so without this the removal would wait up to a second more
    monkeypatch.setattr(receiver_mod, "_SYNC_THROTTLE", 0.1)
    server.routes["/fa"] = body("from_a 1\n")
    server.routes["/fb"] = body("from_b 1\n")
    path = tmp_path / "targets.yaml"

    def write(*groups: dict[str, Any]) -> None:
        tmp = tmp_path / "targets.tmp"
        tmp.write_text(yaml.safe_dump(list(groups)))
        tmp.replace(path)

    write({"targets": [server.address], "labels": {"__metrics_path__": "/fa", "team": "x"}})
    sink = Sink()
    cfg = {"config": {"scrape_configs": [{
        "job_name": "files", "scrape_interval": "500ms", "scrape_timeout": "300ms",
        "file_sd_configs": [{"files": [str(tmp_path / "*.yaml")]}]}]}}

    async def during(rec: PrometheusReceiver) -> None:
        await _until(lambda: sink.points("from_a"))
        write({"targets": [server.address], "labels": {"__metrics_path__": "/fb"}})
        await _until(lambda: sink.points("from_b"))
        n = len(sink.points("from_b"))
        path.unlink()
        # the target goes, and two intervals later its series are marked stale
        await _until(lambda: any(p.flags == 1 for _, p in sink.points("from_b")), 4)
        live = len([p for _, p in sink.points("from_b") if p.flags == 0])
        # the removal waits out the pool's sync throttle (patched to 0.1 s) and the 0.1 s file
        # watch: one scrape may start meanwhile, two on a loaded machine, never a third
        assert live <= n + 2
        await asyncio.sleep(1.2)  # over two intervals: a loop still running would scrape again
        assert len([p for _, p in sink.points("from_b") if p.flags == 0]) == live

    asyncio.run(_run(cfg, sink, 0, during=during))
    (res, a), *_ = sink.points("from_a")
    assert attrs(a.attributes) == {"team": "x"}
    assert res["service.name"] == "files"
    stale_up = [p for _, p in sink.points("up") if p.flags == 1]
    assert stale_up, "the synthetic series of a removed target are marked stale too"


async def _until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class FedDiscoverer:
    """Stands in for kubernetes_sd: sends what the test gives it."""

    def __init__(self) -> None:
        self.send: Callable[[list[TargetGroup]], None] | None = None

    async def run(self, send: Callable[[list[TargetGroup]], None]) -> None:
        self.send = send
        await asyncio.Event().wait()


def test_discovered_kubernetes_labels_become_resource_attributes(
        server: TargetServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.routes["/pod"] = body("pod_metric 1\n")
    fed = FedDiscoverer()
    monkeypatch.setattr(ScrapePool, "_discoverers", lambda self: [fed])
    sink = Sink()
    cfg = {"config": {"scrape_configs": [{
        "job_name": "pods", "scrape_interval": "500ms", "scrape_timeout": "300ms",
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
             "regex": "true", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"replacement": "/pod", "target_label": "__metrics_path__"}]}]}}
    meta = {"__meta_kubernetes_namespace": "shop", "__meta_kubernetes_pod_name": "web-1",
            "__meta_kubernetes_pod_uid": "uid-1", "__meta_kubernetes_pod_node_name": "n1",
            "__meta_kubernetes_pod_container_name": "app"}

    async def during(rec: PrometheusReceiver) -> None:
        await _until(lambda: fed.send is not None)
        assert fed.send is not None
        fed.send([TargetGroup("pod/shop/web-1", (
            {"__address__": server.address, **meta,
             "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true"},
            {"__address__": "10.9.9.9:1", **meta,
             "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "false"}))])
        await _until(lambda: sink.points("pod_metric"))

    asyncio.run(_run(cfg, sink, 0, during=during))
    ((res, p), *_) = sink.points("pod_metric")
    assert res == {"service.name": "pods", "service.instance.id": server.address,
                   "server.port": str(server.port), "url.scheme": "http",
                   "k8s.namespace.name": "shop", "k8s.pod.name": "web-1",
                   "k8s.pod.uid": "uid-1", "k8s.node.name": "n1", "k8s.container.name": "app"}
    assert attrs(p.attributes) == {"namespace": "shop"}  # a target label stays a label
    assert not sink.points("up", **{"service.instance.id": "10.9.9.9:1"})  # dropped: keep


def test_target_limit_fails_every_scrape_of_the_job(server: TargetServer) -> None:
    server.routes["/tl"] = body("m 1\n")
    cfg = _job(server, "/tl", target_limit=1)
    cfg["config"]["scrape_configs"][0]["static_configs"].append(
        {"targets": [server.address], "labels": {"__metrics_path__": "/tl", "instance": "b"}})
    sink = Sink()
    asyncio.run(_run(cfg, sink, 1.2))
    ups = sink.points("up")
    assert ups and {p.as_double for _, p in ups} == {0.0}
    assert not sink.points("m")
