"""k8s_events end to end: a real gateway process watching the test API server (recorded cluster,
set A: 97 core/v1 events), through k8sattributes and resource into ClickHouse (the chDB-backed
server double), with the k8s_events view of exporters/clickhouse/k8sevents.py in place. Checked
where a user looks: rows in k8s_events and otel_logs, before and after watch changes, a 410
relist and restarts."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.ingest import schema_ddl
from exporters.clickhouse.k8sevents import k8s_events_view_ddl
from loadtests.gatewayproc import Gateway, free_port
from receivers.k8sevents.convert import SCOPE_NAME
from tests.chserver import ChServer
from tests.k8sapi import FakeKubeAPI

DB = "otel_k8sev"
CLUSTER = "recorded-k3s"


def items(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["items"]


def expected_node(ev: dict[str, Any], pod_nodes: dict[tuple[str, str], str]) -> str:
    """What node_name must hold: the reporting node, the Node itself, or (through k8sattributes,
    by k8s.pod.uid) the node of a pod the API server still has."""
    obj = ev["involvedObject"]
    if (ev.get("source") or {}).get("host"):
        return ev["source"]["host"]
    if obj["kind"] == "Node":
        return obj["name"]
    if ev.get("reportingComponent") == "kubelet":
        return ev.get("reportingInstance", "")
    if obj["kind"] == "Pod":
        return pod_nodes.get((obj.get("namespace", ""), obj["name"]), "")
    return ""


class Setup:
    def __init__(self, workdir: Path, api: FakeKubeAPI, ch: ChServer) -> None:
        self.workdir, self.api, self.ch = workdir, api, ch
        ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
        exporter = {"endpoint": ch.url, "database": DB, "sending_queue": {"enabled": False}}
        self.config = {
            "receivers": {"k8s_events": {"auth_type": "kubeConfig"}},
            "processors": {
                "k8sattributes": {"auth_type": "kubeConfig", "wait_for_metadata": True,
                                  "pod_association": [{"sources": [
                                      {"from": "resource_attribute", "name": "k8s.pod.uid"}]}]},
                "resource": {"attributes": [
                    {"key": "k8s.cluster.name", "value": CLUSTER, "action": "upsert"}]},
                "batch": {"timeout": "50ms"}},
            "exporters": {"clickhouse": exporter},
            "service": {
                "telemetry": {"metrics": {"address": f"127.0.0.1:{ports['metrics']}"}},
                "pipelines": {"logs": {"receivers": ["k8s_events"],
                                       "processors": ["k8sattributes", "resource", "batch"],
                                       "exporters": ["clickhouse"]}}},
        }
        self.gw = Gateway(workdir, self.config, ports)
        # the recorded events are from 2025-12: no TTL, or k8s_events' 30 days drop them
        options = dataclasses.replace(ClickHouseConfig.model_validate(exporter).schema_options(),
                                      k8s_events_ttl_seconds=0)
        # what the exporter will run at start, plus the view (until ingest.schema_ddl has it)
        for stmt in [*schema_ddl(options), *k8s_events_view_ddl(options)]:
            ch.sql(stmt)

    def rows(self, query: str) -> list[dict[str, Any]]:
        return self.ch.rows(query, DB)

    def count(self, table: str = "k8s_events") -> int:
        return int(self.rows(f"SELECT count() AS n FROM {table}")[0]["n"])

    def wait_count(self, n: int, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while (got := self.count()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return got

    def wait_request(self, predicate: Callable[[str], bool], after: int,
                     timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(predicate(r) for r in self.api.requests[after:]):
            if time.monotonic() > deadline:
                raise AssertionError(f"no such request to the API server: {self.api.requests}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from tests.conftest import SHARED_DATA
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared captures are not at {SHARED_DATA}")
    k8s = SHARED_DATA / "kubernetes"
    workdir = tmp_path_factory.mktemp("k8sevents")
    api = FakeKubeAPI().start()
    ch = ChServer(workdir / "store", free_port())
    try:
        for plural in ("namespaces", "nodes", "replicasets", "deployments", "daemonsets", "jobs",
                       "pods", "events"):
            for obj in items(k8s / f"{plural}.json"):
                api.add(plural, obj)
        ch.start()
        s = Setup(workdir, api, ch)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KUBECONFIG", str(api.write_kubeconfig(workdir / "kubeconfig")))
            s.gw.start()
            yield s
            assert s.gw.stop() == 0, s.gw.logs()[-3000:]
    finally:
        ch.stop()
        api.stop()


def test_the_recorded_events_land_once_with_their_values(setup: Setup) -> None:
    from tests.conftest import SHARED_DATA
    events = items(SHARED_DATA / "kubernetes" / "events.json")
    assert setup.wait_count(97) == 97, setup.gw.logs()[-3000:]
    time.sleep(0.5)
    assert setup.count() == 97
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"].get("nodeName", "")
            for p in setup.api.objects("pods")}
    rows = {r["uid"]: r for r in setup.rows(
        "SELECT uid, resource_version, cluster_id, kind, namespace, name, reason, message, type,"
        " count, pod_name, node_name, source_component, toUnixTimestamp64Nano(timestamp) AS ts"
        " FROM k8s_events")}
    api_rv = {e["metadata"]["uid"]: e["metadata"]["resourceVersion"]
              for e in setup.api.objects("events")}
    assert set(rows) == {e["metadata"]["uid"] for e in events}
    with_node = 0
    for ev in events:
        row, obj = rows[ev["metadata"]["uid"]], ev["involvedObject"]
        count = ev.get("count") or 0
        assert (row["kind"], row["namespace"], row["name"]) == (
            obj["kind"], obj.get("namespace", ""), obj["name"])
        assert (row["reason"], row["message"], row["type"], row["count"]) == (
            ev.get("reason", ""), ev.get("message", ""), ev["type"], count)
        assert row["resource_version"] == api_rv[ev["metadata"]["uid"]]
        assert row["cluster_id"] == CLUSTER
        assert row["pod_name"] == (obj["name"] if obj["kind"] == "Pod" else "")
        assert row["node_name"] == expected_node(ev, pods), (ev, row)
        assert row["source_component"] == ((ev.get("source") or {}).get("component")
                                           or ev.get("reportingComponent", ""))
        assert int(row["ts"]) > 1765300000 * 10**9
        with_node += bool(row["node_name"])
    # k8sattributes filled node_name for scheduler events of pods it knows (no source.host)
    assert with_node > sum(1 for e in events if (e.get("source") or {}).get("host"))

    logs = setup.rows(
        "SELECT ScopeName, SeverityNumber, ResourceAttributes, LogAttributes FROM otel_logs "
        "WHERE LogAttributes['k8s.event.name'] = 'primary-node.187feaa1416f7b42'")
    assert len(logs) == 1
    log = logs[0]
    assert log["ScopeName"] == SCOPE_NAME and log["SeverityNumber"] == 9
    assert log["ResourceAttributes"]["k8s.object.kind"] == "Node"
    assert log["ResourceAttributes"]["k8s.node.name"] == "primary-node"
    assert {k: log["LogAttributes"][k] for k in (
        "k8s.event.reason", "k8s.event.count", "k8s.event.start_time", "k8s.namespace.name")} \
        == {"k8s.event.reason": "Starting", "k8s.event.count": "1",
            "k8s.event.start_time": "2025-12-10 17:25:57 +0000 UTC", "k8s.namespace.name": ""}


def test_watch_changes_relist_and_restart_add_only_new_occurrences(setup: Setup) -> None:
    api = setup.api
    assert setup.wait_count(97) == 97
    template = next(e for e in api.objects("events") if e["reason"] == "Pulled")
    ev = copy.deepcopy(template)
    ev["metadata"] = {"name": "coredns.backoff", "namespace": "kube-system"}
    ev.update(reason="BackOff", type="Warning", message="Back-off restarting failed container",
              count=1)
    added = api.add("events", ev)
    assert setup.wait_count(98) == 98
    changed = copy.deepcopy(added)
    changed["count"] = 2
    changed = api.modify("events", changed)
    assert setup.wait_count(99) == 99
    rows = setup.rows("SELECT count, resource_version, type, pod_name FROM k8s_events WHERE uid = "
                      f"'{added['metadata']['uid']}' ORDER BY count")
    assert rows == [
        {"count": 1, "resource_version": added["metadata"]["resourceVersion"], "type": "Warning",
         "pod_name": template["involvedObject"]["name"]},
        {"count": 2, "resource_version": changed["metadata"]["resourceVersion"],
         "type": "Warning", "pod_name": template["involvedObject"]["name"]}]

    # 410: the watch ends, the receiver relists the events
    mark = len(api.requests)
    api.expire("events")
    setup.wait_request(lambda r: r.startswith("GET /api/v1/events?") and "watch=1" not in r,
                       mark)
    time.sleep(1.0)
    assert setup.count() == 99

    # restart: nothing again; an event that came while the gateway was down comes once
    assert setup.gw.stop() == 0, setup.gw.logs()[-3000:]
    later = copy.deepcopy(ev)
    later["metadata"] = {"name": "coredns.unhealthy", "namespace": "kube-system"}
    later.update(reason="Unhealthy", message="Readiness probe failed")
    later = api.add("events", later)
    mark = len(api.requests)
    setup.gw.start()
    setup.wait_request(lambda r: r.startswith("GET /api/v1/events?") and "watch=1" in r, mark)
    assert setup.wait_count(100) == 100
    time.sleep(1.0)
    assert setup.count() == 100
    assert setup.count("otel_logs") == 100
    assert setup.rows("SELECT reason, message FROM k8s_events WHERE uid = "
                      f"'{later['metadata']['uid']}'") == [
        {"reason": "Unhealthy", "message": "Readiness probe failed"}]
