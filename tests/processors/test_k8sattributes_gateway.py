"""k8sattributes end to end: a real gateway process watching the test API server (recorded
cluster, set A), OTLP/HTTP sent from the pods' own IPs, rows checked in ClickHouse.

Linux routes all of 127/8 to the loopback interface, so a pod whose recorded IP is rewritten to
127.0.0.x can "send" from that address: the gateway sees it as the connection's peer, exactly as
it would see a pod's IP in a cluster.
"""

from __future__ import annotations

import copy
import http.client
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from loadtests.gatewayproc import Gateway, default_config
from tests.k8sapi import FakeKubeAPI
from tests.processors.test_k8sattributes import items

CLUSTER = "recorded-k3s"
# pod name → the loopback address it sends from
SENDERS = {
    "coredns-56f6fc8fd7-p4x9z": "127.0.0.2",  # ReplicaSet → Deployment coredns
    "traefik-57b79cf995-qn4jm": "127.0.0.3",  # Deployment, labels and annotations
    "svclb-traefik-a6edc2ef-c2sjr": "127.0.0.4",  # DaemonSet, two containers
    "helm-install-traefik-5wnn9": "127.0.0.5",  # Job
}
PROVISIONER = ("local-path-provisioner-5cf85fd84d-jntjc", "10.42.0.5",
               "ba046417-ccba-4df3-b7a0-8a7bd2292f46")

K8SATTRIBUTES = {
    "auth_type": "kubeConfig",
    "wait_for_metadata": True,
    "extract": {
        "metadata": ["k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.pod.start_time",
                     "k8s.deployment.name", "k8s.node.name", "k8s.daemonset.name",
                     "k8s.job.name", "container.image.name", "container.image.tag",
                     "k8s.container.name"],
        "labels": [{"tag_name": "app.name", "key": "app.kubernetes.io/name"},
                   {"key": "app"},
                   {"tag_name": "ns.name", "key": "kubernetes.io/metadata.name",
                    "from": "namespace"}],
        "annotations": [{"tag_name": "scrape", "key": "prometheus.io/scrape"}],
    },
    "pod_association": [
        {"sources": [{"from": "resource_attribute", "name": "k8s.pod.uid"}]},
        {"sources": [{"from": "resource_attribute", "name": "k8s.pod.ip"}]},
        {"sources": [{"from": "connection"}]},
    ],
}


def _loopback_usable() -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", 9, timeout=1,
                                          source_address=("127.0.0.2", 0))
        conn.connect()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    conn.close()
    return True


def load_cluster(api: FakeKubeAPI, k8s: Path) -> None:
    for plural in ("namespaces", "nodes", "replicasets", "deployments", "daemonsets", "jobs"):
        for obj in items(k8s / f"{plural}.json"):
            api.add(plural, obj)
    for obj in items(k8s / "pods.json"):
        ip = SENDERS.get(obj["metadata"]["name"])
        if ip:
            obj = copy.deepcopy(obj)
            obj["status"].update(podIP=ip, podIPs=[{"ip": ip}])
        api.add("pods", obj)


def gateway_config(workdir: Path, k8sattributes: dict[str, Any]) -> tuple[dict[str, Any],
                                                                         dict[str, int]]:
    probe = Gateway(workdir)  # for its free ports and default layout
    cfg = default_config(probe.data_dir, probe.ports)
    cfg["processors"]["k8sattributes"] = k8sattributes
    # the deployment stamps its cluster, as config/kubernetes.yaml does
    cfg["processors"]["resource"] = {"attributes": [
        {"key": "k8s.cluster.name", "value": CLUSTER, "action": "upsert"}]}
    for pipeline in cfg["service"]["pipelines"].values():
        pipeline["processors"] = ["k8sattributes", "resource", "batch"]
    return cfg, probe.ports


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKubeAPI, Gateway]]:
    from tests.conftest import SHARED_DATA
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared captures are not at {SHARED_DATA}")
    if not _loopback_usable():
        pytest.skip("cannot send from 127.0.0.2 (127/8 is not all loopback here)")
    workdir = tmp_path_factory.mktemp("k8sattributes")
    api = FakeKubeAPI().start()
    try:
        load_cluster(api, SHARED_DATA / "kubernetes")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KUBECONFIG", str(api.write_kubeconfig(workdir / "kubeconfig")))
            cfg, ports = gateway_config(workdir, K8SATTRIBUTES)
            gw = Gateway(workdir, cfg, ports).start()
        yield api, gw
        code = gw.stop()
        assert code == 0, gw.logs()
    finally:
        api.stop()


def _resource(req: Any, field: str, attrs: dict[str, str]) -> Any:
    rs = getattr(req, field).add()
    for key, value in attrs.items():
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    return rs


def send(gw: Gateway, signal: str, attrs: dict[str, str], source_ip: str = "127.0.0.1") -> None:
    now = time.time_ns()
    if signal == "traces":
        req: Any = ExportTraceServiceRequest()
        _resource(req, "resource_spans", attrs).scope_spans.add().spans.add(
            name="op", trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8],
            start_time_unix_nano=now, end_time_unix_nano=now + 1000)
    elif signal == "logs":
        req = ExportLogsServiceRequest()
        _resource(req, "resource_logs", attrs).scope_logs.add().log_records.add(
            time_unix_nano=now, severity_text="INFO").body.string_value = "hello"
    else:
        req = ExportMetricsServiceRequest()
        metric = _resource(req, "resource_metrics", attrs).scope_metrics.add().metrics.add(
            name="k8sattributes_test_gauge")
        metric.gauge.data_points.add(time_unix_nano=now, as_double=1.0)
    conn = http.client.HTTPConnection("127.0.0.1", gw.ports["http"], timeout=10,
                                      source_address=(source_ip, 0))
    try:
        conn.request("POST", f"/v1/{signal}", req.SerializeToString(),
                     {"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
    finally:
        conn.close()


TABLES = {"traces": "otel_traces", "logs": "otel_logs", "metrics": "otel_metrics_gauge"}


def rows(gw: Gateway, signal: str, run: str, expect: int = 1) -> list[dict[str, Any]]:
    where = f"ResourceAttributes['otelgw.test.run'] = '{run}'"
    gw.wait_count(TABLES[signal], expect, where)
    # the metric tables have cluster_id and node_name but no pod_name column
    pod = "ResourceAttributes['k8s.pod.name'] AS pod_name" if signal == "metrics" else "pod_name"
    return gw.rows(f"SELECT ResourceAttributes AS attrs, cluster_id, {pod}, node_name "
                   f"FROM {TABLES[signal]} WHERE {where}")


def enriched(gw: Gateway, signal: str, source_ip: str, extra: dict[str, str] | None = None
             ) -> dict[str, Any]:
    run = uuid.uuid4().hex
    send(gw, signal, {"otelgw.test.run": run, "service.name": f"k8sattributes-{signal}",
                      **(extra or {})}, source_ip)
    [row] = rows(gw, signal, run)
    return row


def until_enriched(gw: Gateway, source_ip: str, timeout: float = 20) -> dict[str, Any]:
    """Send from `source_ip` until a row comes back with a pod (a watch event is in flight)."""
    deadline = time.monotonic() + timeout
    while True:
        row = enriched(gw, "traces", source_ip)
        if row["pod_name"] or time.monotonic() > deadline:
            return row
        time.sleep(0.2)


@pytest.mark.parametrize("signal, pod", [
    ("traces", "coredns-56f6fc8fd7-p4x9z"),
    ("logs", "traefik-57b79cf995-qn4jm"),
    ("metrics", "svclb-traefik-a6edc2ef-c2sjr"),
])
def test_association_by_connection_ip(cluster: tuple[FakeKubeAPI, Gateway], signal: str,
                                      pod: str) -> None:
    _, gw = cluster
    row = enriched(gw, signal, SENDERS[pod])
    assert (row["cluster_id"], row["pod_name"], row["node_name"]) == (CLUSTER, pod,
                                                                      "primary-node")
    attrs = row["attrs"]
    assert attrs["k8s.namespace.name"] == "kube-system"
    assert attrs["k8s.pod.start_time"].startswith("2025-12-10T17:26:")
    assert attrs["ns.name"] == "kube-system"  # from the Namespace object's labels
    assert attrs["service.name"] == f"k8sattributes-{signal}"  # data wins over metadata


def test_deployment_labels_annotations_and_containers(
        cluster: tuple[FakeKubeAPI, Gateway]) -> None:
    _, gw = cluster
    traefik = enriched(gw, "traces", SENDERS["traefik-57b79cf995-qn4jm"])["attrs"]
    assert traefik["k8s.deployment.name"] == "traefik"  # pod → ReplicaSet → Deployment
    assert traefik["app.name"] == "traefik" and traefik["scrape"] == "true"
    assert traefik["container.image.name"] == "docker.io/rancher/mirrored-library-traefik"
    assert traefik["container.image.tag"] == "2.11.10"
    coredns = enriched(gw, "traces", SENDERS["coredns-56f6fc8fd7-p4x9z"])["attrs"]
    assert coredns["k8s.deployment.name"] == "coredns"
    svclb = enriched(gw, "traces", SENDERS["svclb-traefik-a6edc2ef-c2sjr"],
                     {"k8s.container.name": "lb-tcp-443"})["attrs"]
    assert svclb["k8s.daemonset.name"] == "svclb-traefik-a6edc2ef"
    assert svclb["k8s.pod.labels.app"] == "svclb-traefik-a6edc2ef"
    assert svclb["container.image.name"] == "docker.io/rancher/klipper-lb"
    job = enriched(gw, "logs", SENDERS["helm-install-traefik-5wnn9"])["attrs"]
    assert job["k8s.job.name"] == "helm-install-traefik"
    assert "k8s.deployment.name" not in job


def test_association_by_resource_attributes(cluster: tuple[FakeKubeAPI, Gateway]) -> None:
    _, gw = cluster
    name, ip, uid = PROVISIONER
    # sent from 127.0.0.1 (no pod): the attributes an agent or the SDK set decide
    assert enriched(gw, "traces", "127.0.0.1", {"k8s.pod.ip": ip})["pod_name"] == name
    assert enriched(gw, "logs", "127.0.0.1", {"k8s.pod.uid": uid})["pod_name"] == name
    # the first rule that resolves wins, even over the connection's pod
    row = enriched(gw, "traces", SENDERS["coredns-56f6fc8fd7-p4x9z"], {"k8s.pod.uid": uid})
    assert row["pod_name"] == name
    unknown = enriched(gw, "traces", "127.0.0.1")
    assert (unknown["pod_name"], unknown["node_name"]) == ("", "")
    assert "k8s.namespace.name" not in unknown["attrs"]


def test_pod_churn_restart_and_relist(cluster: tuple[FakeKubeAPI, Gateway]) -> None:
    api, gw = cluster
    template = next(p for p in api.objects("pods")
                    if p["metadata"]["name"] == "coredns-56f6fc8fd7-p4x9z")

    def add(name: str, ip: str) -> None:
        pod = copy.deepcopy(template)
        pod["metadata"].update(name=name, uid=f"uid-{name}")
        pod["metadata"].pop("resourceVersion", None)
        pod["status"].update(podIP=ip, podIPs=[{"ip": ip}],
                             startTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        api.add("pods", pod)

    add("added-after-start", "127.0.0.6")
    assert until_enriched(gw, "127.0.0.6")["pod_name"] == "added-after-start"
    api.delete("pods", "kube-system", "added-after-start")
    time.sleep(0.5)  # the DELETED event reaches the gateway
    # late data from a deleted pod: still found within the grace period (2 minutes)
    assert enriched(gw, "traces", "127.0.0.6")["pod_name"] == "added-after-start"

    api.restart()  # the gateway's watches drop; they resume from their resourceVersion
    add("added-after-restart", "127.0.0.7")
    assert until_enriched(gw, "127.0.0.7")["pod_name"] == "added-after-restart"

    api.expire("pods")  # compaction: the watch gets 410 Expired and relists
    add("added-after-410", "127.0.0.8")
    assert until_enriched(gw, "127.0.0.8")["pod_name"] == "added-after-410"
    assert enriched(gw, "traces", "127.0.0.2")["pod_name"] == "coredns-56f6fc8fd7-p4x9z"

    with urllib.request.urlopen(f"http://127.0.0.1:{gw.ports['metrics']}/metrics") as resp:
        metrics = resp.read().decode()
    added = [line for line in metrics.splitlines()
             if line.startswith("otelcol_otelsvc_k8s_pod_added_total")]
    assert added and float(added[0].split()[-1]) >= 10, metrics  # 7 listed + 3 watched
    assert 'otelcol_otelsvc_k8s_pod_deleted_total{processor="k8sattributes"} 1.0' in metrics
    assert "otelcol_otelsvc_k8s_pod_table_size" in metrics
    assert "otelcol_processor_k8sattributes_pod_association_success_total" in metrics


def test_rbac_forbidden_stops_start_with_the_missing_permission(
        shared_data: Path, tmp_path: Path) -> None:
    api = FakeKubeAPI().start()
    try:
        load_cluster(api, shared_data / "kubernetes")
        api.forbid("replicasets")
        cfg, ports = gateway_config(tmp_path, {**K8SATTRIBUTES,
                                               "wait_for_metadata_timeout": "1s"})
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KUBECONFIG", str(api.write_kubeconfig(tmp_path / "kubeconfig")))
            gw = Gateway(tmp_path, cfg, ports)
            with pytest.raises(RuntimeError) as exc:
                gw.start()
        logs = str(exc.value)
        assert "otelgw exited with 1" in logs
        assert "failed to wait for caches to sync within 1s" in logs
        assert ("list replicasets.apps is forbidden for system:serviceaccount:otelgw:otelgw"
                in logs)
        assert 'apiGroups ["apps"], resources ["replicasets"], verbs ["get", "list", "watch"]' \
            in logs
    finally:
        api.stop()
