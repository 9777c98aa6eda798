"""k8sattributes against the test API server over real HTTP: list + watch, churn, restarts, 410
relists, RBAC errors, wait_for_metadata. Objects are the recorded cluster (set A)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.component import ComponentID, Host
from gateway.errors import GatewayError
from gateway.payload import Payload, RequestContext
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from processors.k8sattributes.config import K8sAttributesConfig
from processors.k8sattributes.processor import K8sAttributesProcessor
from tests.k8sapi import FakeKubeAPI
from tests.processors.test_k8sattributes import COREDNS, attrs_of, items, traces

NEW_POD_IP = "10.42.0.50"


@pytest.fixture
def api(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        FakeKubeAPI]:
    fake = FakeKubeAPI().start()
    k8s = shared_data / "kubernetes"
    for plural in ("namespaces", "nodes", "replicasets", "deployments", "daemonsets", "jobs",
                   "pods"):
        for obj in items(k8s / f"{plural}.json"):
            fake.add(plural, obj)
    monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
    yield fake
    fake.stop()


def new_pod(api: FakeKubeAPI, name: str, ip: str) -> dict[str, Any]:
    """A copy of the recorded coredns pod under another name, uid and IP."""
    pod = copy.deepcopy(next(p for p in api.objects("pods")
                             if p["metadata"]["name"] == COREDNS[0]))
    pod["metadata"].update(name=name, uid=f"uid-{name}")
    pod["metadata"].pop("resourceVersion", None)
    pod["status"].update(podIP=ip, podIPs=[{"ip": ip}],
                         startTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return pod


class Sink:
    def __init__(self) -> None:
        self.last: Any = None

    async def consume(self, payload: Payload) -> None:
        self.last = Signal.TRACES.request_type.FromString(payload.raw)


class Harness:
    def __init__(self, config: dict[str, Any]) -> None:
        self.cfg = K8sAttributesConfig.model_validate({"auth_type": "kubeConfig", **config})
        self.telemetry = SelfTelemetry()
        self.sink = Sink()
        self.proc = K8sAttributesProcessor(ComponentID("k8sattributes"), self.cfg,
                                           Signal.TRACES, self.sink)

    async def __aenter__(self) -> Harness:
        await self.proc.start(Host(telemetry=self.telemetry))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.proc.shutdown()

    async def enrich(self, client_ip: str, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        req = traces(attrs or {})
        await self.proc.consume(Payload(Signal.TRACES, req.SerializeToString(), None, 1,
                                        RequestContext(client_address=client_ip)))
        return attrs_of(self.sink.last.resource_spans[0].resource)

    async def pod_name(self, client_ip: str) -> str:
        return str((await self.enrich(client_ip)).get("k8s.pod.name", ""))

    def metric(self, name: str) -> float:
        value = self.telemetry.registry.get_sample_value(name, {"processor": "k8sattributes"})
        return value or 0.0


async def until(cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if asyncio.iscoroutine(result):
            result = await result
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


def test_list_watch_and_pod_churn(api: FakeKubeAPI) -> None:
    async def scenario() -> None:
        async with Harness({"wait_for_metadata": True}) as h:
            assert await h.pod_name(COREDNS[1]) == COREDNS[0]
            assert (await h.enrich(COREDNS[1]))["k8s.deployment.name"] == "coredns"
            assert h.metric("otelcol_otelsvc_k8s_pod_added_total") == 7

            api.add("pods", new_pod(api, "late-pod", NEW_POD_IP))  # after start: via the watch
            assert await until(lambda: h.pod_name(NEW_POD_IP)) == "late-pod"

            api.delete("pods", "kube-system", "late-pod")
            await until(lambda: h.metric("otelcol_otelsvc_k8s_pod_deleted_total") == 1)
            # gone from the API, still found during the grace period (late data)
            assert await h.pod_name(NEW_POD_IP) == "late-pod"
            h.proc.watcher.table.grace_period = 0  # type: ignore[union-attr]
            h.proc.watcher.table.expire()  # type: ignore[union-attr]
            assert await h.pod_name(NEW_POD_IP) == ""

            # only what the rules read is watched: pods and replicasets, nothing else
            watched = {r.split("?")[0] for r in api.requests}
            assert watched == {"GET /api/v1/pods", "GET /apis/apps/v1/replicasets"}
    asyncio.run(scenario())


def test_api_server_restart_and_410_relist(api: FakeKubeAPI) -> None:
    async def scenario() -> None:
        async with Harness({"wait_for_metadata": True}) as h:
            informer = next(i for i in h.proc.watcher.informers  # type: ignore[union-attr]
                            if i.resource.plural == "pods")
            api.restart()  # open watches drop; the informer resumes from its resourceVersion
            api.add("pods", new_pod(api, "after-restart", "10.42.0.51"))
            assert await until(lambda: h.pod_name("10.42.0.51"), 20) == "after-restart"
            assert informer.lists == 1  # resumed, not relisted

            api.expire("pods")  # history compacted: the watch gets 410 and must relist
            api.add("pods", new_pod(api, "after-410", "10.42.0.52"))
            assert await until(lambda: h.pod_name("10.42.0.52"), 20) == "after-410"
            assert informer.lists == 2
            assert await h.pod_name(COREDNS[1]) == COREDNS[0]  # the rest survived the relist
    asyncio.run(scenario())


def test_forbidden_pods_fail_start_with_the_missing_permission(
        api: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    api.forbid("pods")

    async def scenario() -> None:
        h = Harness({"wait_for_metadata": True, "wait_for_metadata_timeout": "1500ms"})
        with pytest.raises(GatewayError) as exc:
            await h.proc.start(Host(telemetry=h.telemetry))
        message = str(exc.value)
        assert "failed to wait for caches to sync within 1.5s" in message
        assert "pods" in message and "forbidden" in message
        assert 'resources ["pods"], verbs ["get", "list", "watch"]' in message
    asyncio.run(scenario())


def test_forbidden_without_waiting_is_logged_and_data_passes(
        api: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    api.forbid("replicasets")

    async def scenario() -> None:
        caplog.set_level(logging.INFO)
        async with Harness({}) as h:  # wait_for_metadata false: start does not block
            assert await until(lambda: h.pod_name(COREDNS[1])) == COREDNS[0]
            errors = await until(lambda: [r for r in caplog.records
                                          if r.levelno >= logging.ERROR
                                          and "replicasets" in r.getMessage()], 5)
            assert errors, caplog.text
            assert "forbidden" in errors[0].getMessage()
            assert '"apps"' in errors[0].getMessage()  # the API group to grant
            assert "k8s.deployment.name" not in await h.enrich(COREDNS[1])
            api.forbid("replicasets", False)  # permission granted: the cache fills (backoff)
    asyncio.run(scenario())


def test_unreachable_api_fails_start_clearly(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))

    async def scenario() -> None:
        h = Harness({})
        with pytest.raises(GatewayError, match="cannot reach the Kubernetes API.*kubeConfig"):
            await h.proc.start(Host(telemetry=h.telemetry))
    asyncio.run(scenario())


def test_filters_become_selectors(api: FakeKubeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE", "primary-node")

    async def scenario() -> None:
        cfg = {"filter": {"node_from_env_var": "NODE", "namespace": "kube-system",
                          "labels": [{"key": "k8s-app", "value": "kube-dns"}]},
               "extract": {"metadata": ["k8s.pod.name", "k8s.node.uid"],
                           "labels": [{"key": "team", "from": "namespace"}]},
               "wait_for_metadata": True}
        async with Harness(cfg) as h:
            assert await h.pod_name(COREDNS[1]) == COREDNS[0]
            assert await h.pod_name("10.42.0.8") == ""  # traefik: not kube-dns
            assert (await h.enrich(COREDNS[1]))["k8s.node.uid"]
        pods = [r for r in api.requests if "/pods" in r]
        assert pods[0].startswith("GET /api/v1/namespaces/kube-system/pods?")
        assert "labelSelector=k8s-app%3Dkube-dns" in pods[0]
        assert "fieldSelector=spec.nodeName%3Dprimary-node" in pods[0]
        nodes = [r for r in api.requests if "/nodes" in r]
        assert "fieldSelector=metadata.name%3Dprimary-node" in nodes[0]
        assert any(r.startswith("GET /api/v1/namespaces?") for r in api.requests)
    asyncio.run(scenario())


def test_shared_between_pipelines(api: FakeKubeAPI) -> None:
    async def scenario() -> None:
        cfg = K8sAttributesConfig.model_validate({"auth_type": "kubeConfig"})
        tel = SelfTelemetry()
        procs = [K8sAttributesProcessor(ComponentID("k8sattributes"), cfg, s, Sink())
                 for s in Signal]
        for p in procs:
            await p.start(Host(telemetry=tel))
        assert len({id(p.watcher) for p in procs}) == 1  # one watch for all three pipelines
        await procs[0].watcher.wait_synced(5)  # type: ignore[union-attr]
        await procs[0].shutdown()
        await procs[1].shutdown()
        watcher = procs[2].watcher
        assert watcher is not None and watcher.client is not None  # still in use
        await procs[2].shutdown()
        await procs[2].shutdown()  # the pipeline calls it twice: safe
        assert watcher.client is None and all(i._task is None for i in watcher.informers)
        # requests still in flight while the pipeline shuts down are enriched all the same
        sink = Sink()
        procs[0].next = sink  # the traces pipeline's
        req = traces({})
        await procs[0].consume(Payload(Signal.TRACES, req.SerializeToString(), None, 1,
                                       RequestContext(client_address=COREDNS[1])))
        assert attrs_of(sink.last.resource_spans[0].resource)["k8s.pod.name"] == COREDNS[0]
        lists = [r for r in api.requests if r.startswith("GET /api/v1/pods?")
                 and "watch" not in r]
        assert len(lists) == 1
    asyncio.run(scenario())


def test_pod_table_memory_is_slim(api: FakeKubeAPI) -> None:
    async def scenario() -> None:
        async with Harness({"wait_for_metadata": True}) as h:
            informer = next(i for i in h.proc.watcher.informers  # type: ignore[union-attr]
                            if i.resource.plural == "pods")
            pod = informer.items[f"kube-system/{COREDNS[0]}"]
            assert not isinstance(pod, dict)  # the informer holds the slim record only
            raw = next(p for p in api.objects("pods") if p["metadata"]["name"] == COREDNS[0])
            assert "managedFields" in json.dumps(raw)
            assert set(pod.attributes) <= {"k8s.pod.name", "k8s.pod.uid", "k8s.namespace.name",
                                           "k8s.node.name", "k8s.pod.start_time"}
    asyncio.run(scenario())
