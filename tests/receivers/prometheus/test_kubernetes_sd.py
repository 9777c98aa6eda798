"""kubernetes_sd_configs against the test API server loaded with a recorded k3s cluster
(../shared/data/kubernetes, set A): the label sets Prometheus's discovery/kubernetes gives."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from receivers.prometheus.discovery import TargetGroup
from receivers.prometheus.discovery.kubernetes import KubernetesDiscoverer, KubernetesSDConfig
from tests.k8sapi import FakeKubeAPI

M = "__meta_kubernetes_"
COREDNS = "coredns-56f6fc8fd7-p4x9z"
COREDNS_POD = {  # pod_labels() of the recorded coredns pod
    M + "pod_name": COREDNS, M + "pod_ip": "10.42.0.6", M + "pod_ready": "true",
    M + "pod_phase": "Running", M + "pod_node_name": "primary-node",
    M + "pod_host_ip": "172.17.0.2", M + "pod_uid": "dd820d56-5b83-42c5-955f-058aedc0ad27",
    M + "pod_label_k8s_app": "kube-dns", M + "pod_labelpresent_k8s_app": "true",
    M + "pod_label_pod_template_hash": "56f6fc8fd7",
    M + "pod_labelpresent_pod_template_hash": "true",
    M + "pod_controller_kind": "ReplicaSet", M + "pod_controller_name": "coredns-56f6fc8fd7",
}
COREDNS_CONTAINER = {M + "pod_container_name": "coredns",
                     M + "pod_container_image": "rancher/mirrored-coredns-coredns:1.11.3",
                     M + "pod_container_init": "false"}


pytestmark = pytest.mark.usefixtures("fast_informer_backoff")


@pytest.fixture
def api(recorded_kube_api: FakeKubeAPI) -> FakeKubeAPI:
    return recorded_kube_api


class Sent:
    """What the discoverer sent: every batch, and the current group per source."""

    def __init__(self) -> None:
        self.batches: list[list[TargetGroup]] = []
        self.groups: dict[str, TargetGroup] = {}

    def __call__(self, groups: list[TargetGroup]) -> None:
        self.batches.append(groups)
        self.groups.update((g.source, g) for g in groups)

    def targets(self, source: str) -> list[dict[str, str]]:
        """Each target's full label set (group labels + its own), as Prometheus merges them."""
        group = self.groups[source]
        return [{**group.labels, **t} for t in group.targets]


@contextlib.asynccontextmanager
async def discovering(api: FakeKubeAPI, tmp_path: Path, **config) -> AsyncIterator[Sent]:
    if "api_server" not in config:
        config["kubeconfig_file"] = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
    sent = Sent()
    task = asyncio.create_task(KubernetesDiscoverer(KubernetesSDConfig(**config), "k8s").run(sent))
    try:
        await until(lambda: sent.batches or task.done(), "the first target groups")
        if task.done():
            task.result()
        yield sent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(cond, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


# ---- roles: exact label sets of recorded objects ---------------------------------------------

def test_pod_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    async def main():
        async with discovering(api, tmp_path, role="pod") as sent:
            return sent

    sent = run(main())
    assert len(sent.batches) == 1 and len(sent.groups) == 7
    ms = sent.groups["pod/kube-system/metrics-server-5985cbc9d7-9jgk6"]
    assert ms.labels == {
        M + "namespace": "kube-system", M + "pod_name": "metrics-server-5985cbc9d7-9jgk6",
        M + "pod_ip": "10.42.0.3", M + "pod_ready": "true", M + "pod_phase": "Running",
        M + "pod_node_name": "primary-node", M + "pod_host_ip": "172.17.0.2",
        M + "pod_uid": "8dc6c46e-a4eb-4ab6-a689-e988bbd91cf2",
        M + "pod_label_k8s_app": "metrics-server", M + "pod_labelpresent_k8s_app": "true",
        M + "pod_label_pod_template_hash": "5985cbc9d7",
        M + "pod_labelpresent_pod_template_hash": "true",
        M + "pod_controller_kind": "ReplicaSet",
        M + "pod_controller_name": "metrics-server-5985cbc9d7"}
    assert ms.targets == ({
        "__address__": "10.42.0.3:10250", M + "pod_container_name": "metrics-server",
        M + "pod_container_id": "containerd://33a0280d96e3346e59c7d28a8985d37327849f0aca6d938c"
                                "c5c51e23f64bc7b0",
        M + "pod_container_image": "rancher/mirrored-metrics-server:v0.7.2",
        M + "pod_container_port_number": "10250", M + "pod_container_port_name": "https",
        M + "pod_container_port_protocol": "TCP", M + "pod_container_init": "false"},)
    # One target per declared port; the bare pod IP for a container without ports.
    coredns = sent.groups[f"pod/kube-system/{COREDNS}"]
    assert [(t["__address__"], t[M + "pod_container_port_name"],
             t[M + "pod_container_port_protocol"]) for t in coredns.targets] == [
        ("10.42.0.6:53", "dns", "UDP"), ("10.42.0.6:53", "dns-tcp", "TCP"),
        ("10.42.0.6:9153", "metrics", "TCP")]
    lpp = sent.groups["pod/kube-system/local-path-provisioner-5cf85fd84d-jntjc"].targets
    assert lpp == ({"__address__": "10.42.0.5",
                    M + "pod_container_name": "local-path-provisioner",
                    M + "pod_container_id": "containerd://dee0ef59168e0152c8490691acab0070e4275"
                                            "bfe3929cdc08c1b1e79bfdb5cba",
                    M + "pod_container_image": "rancher/local-path-provisioner:v0.0.30",
                    M + "pod_container_init": "false"},)
    traefik = sent.targets("pod/kube-system/traefik-57b79cf995-qn4jm")[0]
    assert traefik[M + "pod_annotation_prometheus_io_scrape"] == "true"
    assert traefik[M + "pod_annotationpresent_prometheus_io_port"] == "true"
    assert traefik[M + "pod_label_app_kubernetes_io_name"] == "traefik"
    helm = sent.groups["pod/kube-system/helm-install-traefik-5wnn9"].labels
    assert helm[M + "pod_ready"] == "false" and helm[M + "pod_phase"] == "Succeeded"
    assert helm[M + "pod_controller_kind"] == "Job"
    assert M + "pod_job_name" not in helm  # only with attach_metadata.job


def test_node_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    async def main():
        async with discovering(api, tmp_path, role="node") as sent:
            return sent

    sent = run(main())
    node = sent.groups["node/primary-node"]
    assert node.targets == ({"__address__": "172.17.0.2:10250", "instance": "primary-node",
                             M + "node_address_InternalIP": "172.17.0.2",
                             M + "node_address_Hostname": "7d2e40cb41c1"},)
    fixed = {k: v for k, v in node.labels.items()
             if "_label" not in k and "_annotation" not in k}
    assert fixed == {M + "node_name": "primary-node",
                     M + "node_provider_id": "k3s://primary-node",
                     M + "node_condition_memorypressure": "false",
                     M + "node_condition_diskpressure": "false",
                     M + "node_condition_pidpressure": "false",
                     M + "node_condition_ready": "true"}
    assert node.labels[M + "node_label_node_role_kubernetes_io_control_plane"] == "true"
    assert node.labels[M + "node_labelpresent_kubernetes_io_hostname"] == "true"
    assert node.labels[M + "node_annotation_k3s_io_internal_ip"] == "172.17.0.2"
    recorded = api.objects("nodes")[0]["metadata"]
    assert sum("_labelpresent_" in k for k in node.labels) == len(recorded["labels"])
    assert sum("_annotationpresent_" in k for k in node.labels) == len(recorded["annotations"])


def test_endpoints_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    async def main():
        async with discovering(api, tmp_path, role="endpoints") as sent:
            return sent

    sent = run(main())
    group = sent.groups["endpoints/kube-system/kube-dns"]
    endpoint = {M + "endpoint_ready": "true", M + "endpoint_address_target_kind": "Pod",
                M + "endpoint_address_target_name": COREDNS,
                M + "endpoint_node_name": "primary-node", **COREDNS_POD, **COREDNS_CONTAINER}
    # As Prometheus: the container port is the first with the endpoint's number ("dns" for
    # both 53s), its protocol label the endpoint port's.
    assert list(group.targets) == [
        {"__address__": "10.42.0.6:53", M + "endpoint_port_name": "dns-tcp",
         M + "endpoint_port_protocol": "TCP", **endpoint,
         M + "pod_container_port_name": "dns", M + "pod_container_port_number": "53",
         M + "pod_container_port_protocol": "TCP"},
        {"__address__": "10.42.0.6:53", M + "endpoint_port_name": "dns",
         M + "endpoint_port_protocol": "UDP", **endpoint,
         M + "pod_container_port_name": "dns", M + "pod_container_port_number": "53",
         M + "pod_container_port_protocol": "UDP"},
        {"__address__": "10.42.0.6:9153", M + "endpoint_port_name": "metrics",
         M + "endpoint_port_protocol": "TCP", **endpoint,
         M + "pod_container_port_name": "metrics", M + "pod_container_port_number": "9153",
         M + "pod_container_port_protocol": "TCP"}]
    assert {k for k in group.labels if "annotation" not in k} == {
        M + "namespace", M + "service_name", M + "endpoints_name",
        *(f"{M}{kind}_{p}_{name}" for kind in ("service", "endpoints")
          for p in ("label", "labelpresent")
          for name in ("k8s_app", "kubernetes_io_cluster_service", "kubernetes_io_name",
                       "objectset_rio_cattle_io_hash"))}
    assert group.labels[M + "service_annotation_prometheus_io_port"] == "9153"
    assert group.labels[M + "endpoints_annotation_endpoints_kubernetes_io_last_change_trigger_"
                        "time"] == "2025-12-10T17:26:09Z"
    # No pod behind default/kubernetes: endpoint labels only.
    assert sent.groups["endpoints/default/kubernetes"].targets == ({
        "__address__": "172.17.0.2:6443", M + "endpoint_port_name": "https",
        M + "endpoint_port_protocol": "TCP", M + "endpoint_ready": "true"},)


def test_endpointslice_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    async def main():
        async with discovering(api, tmp_path, role="endpointslice") as sent:
            return sent

    sent = run(main())
    group = sent.groups["endpointslice/kube-system/kube-dns-zvp9g"]
    S = M + "endpointslice_"
    endpoint = {S + "endpoint_conditions_ready": "true", S + "endpoint_conditions_serving": "true",
                S + "endpoint_conditions_terminating": "false",
                S + "address_target_kind": "Pod", S + "address_target_name": COREDNS,
                S + "endpoint_node_name": "primary-node", **COREDNS_POD, **COREDNS_CONTAINER}
    # Here the container port's own protocol is reported (UDP for the first 53).
    assert list(group.targets) == [
        {"__address__": "10.42.0.6:9153", S + "port_name": "metrics", S + "port_protocol": "TCP",
         S + "port": "9153", **endpoint, M + "pod_container_port_name": "metrics",
         M + "pod_container_port_number": "9153", M + "pod_container_port_protocol": "TCP"},
        {"__address__": "10.42.0.6:53", S + "port_name": "dns", S + "port_protocol": "UDP",
         S + "port": "53", **endpoint, M + "pod_container_port_name": "dns",
         M + "pod_container_port_number": "53", M + "pod_container_port_protocol": "UDP"},
        {"__address__": "10.42.0.6:53", S + "port_name": "dns-tcp", S + "port_protocol": "TCP",
         S + "port": "53", **endpoint, M + "pod_container_port_name": "dns",
         M + "pod_container_port_number": "53", M + "pod_container_port_protocol": "UDP"}]
    assert group.labels[S + "address_type"] == "IPv4"
    assert group.labels[S + "name"] == "kube-dns-zvp9g"
    assert group.labels[S + "label_kubernetes_io_service_name"] == "kube-dns"
    assert group.labels[M + "service_name"] == "kube-dns"  # via kubernetes.io/service-name
    assert group.labels[M + "namespace"] == "kube-system"


def test_service_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    async def main():
        async with discovering(api, tmp_path, role="service") as sent:
            return sent

    sent = run(main())
    assert sent.groups["svc/kube-system/kube-dns"].targets == tuple(
        {"__address__": f"kube-dns.kube-system.svc:{port}", M + "service_port_name": name,
         M + "service_port_number": str(port), M + "service_port_protocol": proto,
         M + "service_type": "ClusterIP", M + "service_cluster_ip": "10.43.0.10"}
        for name, port, proto in (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"),
                                  ("metrics", 9153, "TCP")))
    traefik = sent.targets("svc/kube-system/traefik")[0]
    assert traefik[M + "service_type"] == "LoadBalancer"
    assert traefik[M + "service_loadbalancer_ip"] == "172.17.0.2"  # status.loadBalancer
    assert traefik[M + "service_name"] == "traefik" and traefik[M + "namespace"] == "kube-system"


def test_ingress_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    api.add("ingresses", {"metadata": {"name": "web", "namespace": "default",
                                       "labels": {"app": "web"}},
                          "spec": {"ingressClassName": "traefik",
                                   "tls": [{"hosts": ["*.example.com"]}],
                                   "rules": [{"host": "a.example.com", "http": {"paths": [
                                       {"path": "/api"}, {"path": ""}]}},
                                       {"host": "plain.example.org"}]}})

    async def main():
        async with discovering(api, tmp_path, role="ingress") as sent:
            return sent

    sent = run(main())
    group = sent.groups["ingress/default/web"]
    assert group.labels == {M + "namespace": "default", M + "ingress_name": "web",
                            M + "ingress_class_name": "traefik",
                            M + "ingress_label_app": "web", M + "ingress_labelpresent_app": "true"}
    assert [(t["__address__"], t[M + "ingress_scheme"], t[M + "ingress_path"])
            for t in group.targets] == [("a.example.com", "https", "/api"),
                                        ("a.example.com", "https", "/"),
                                        ("plain.example.org", "http", "/")]


# ---- metadata, namespaces, selectors ---------------------------------------------------------

def test_attach_metadata(api: FakeKubeAPI, tmp_path: Path) -> None:
    async def main():
        async with discovering(api, tmp_path, role="pod", attach_metadata={
                "node": True, "namespace": True, "deployment": True, "job": True}) as sent:
            node = api.objects("nodes")[0]
            node["metadata"]["labels"]["zone"] = "z1"
            api.modify("nodes", node)  # every pod on the node gets the new node label
            await until(lambda: len(sent.batches) > 1, "node update")
            return sent

    sent = run(main())
    coredns = sent.groups[f"pod/kube-system/{COREDNS}"].labels
    assert coredns[M + "pod_deployment_name"] == "coredns"
    assert coredns[M + "node_name"] == "primary-node"
    assert coredns[M + "node_label_zone"] == "z1"
    assert coredns[M + "namespace_label_kubernetes_io_metadata_name"] == "kube-system"
    assert len(sent.batches[1]) == 7
    helm = sent.groups["pod/kube-system/helm-install-traefik-5wnn9"].labels
    assert helm[M + "pod_job_name"] == "helm-install-traefik"
    assert M + "pod_cronjob_name" not in helm  # the Job belongs to a HelmChart


def test_namespaces_and_selectors_are_sent_to_the_api(api: FakeKubeAPI, tmp_path: Path) -> None:
    async def main():
        async with discovering(api, tmp_path, role="endpoints",
                               namespaces={"names": ["kube-system"]},
                               selectors=[{"role": "pod", "label": "k8s-app=kube-dns"},
                                          {"role": "endpoints",
                                           "field": "metadata.name!=traefik"}]) as sent:
            return sent

    sent = run(main())
    assert sorted(sent.groups) == ["endpoints/kube-system/kube-dns",
                                   "endpoints/kube-system/metrics-server"]
    # The metrics-server pod is filtered out by the pod selector: no pod labels.
    ms = sent.groups["endpoints/kube-system/metrics-server"].targets[0]
    assert M + "pod_name" not in ms
    assert sent.groups["endpoints/kube-system/kube-dns"].targets[0][M + "pod_name"] == COREDNS
    lists = {urlsplit(r.split()[1]).path: parse_qs(urlsplit(r.split()[1]).query)
             for r in api.requests if "watch" not in r}
    assert sorted(lists) == [f"/api/v1/namespaces/kube-system/{p}"
                             for p in ("endpoints", "pods", "services")]
    assert lists["/api/v1/namespaces/kube-system/pods"]["labelSelector"] == ["k8s-app=kube-dns"]
    assert lists["/api/v1/namespaces/kube-system/endpoints"]["fieldSelector"] == [
        "metadata.name!=traefik"]
    assert "labelSelector" not in lists["/api/v1/namespaces/kube-system/services"]


def test_unreadable_kubeconfig_is_retried(api: FakeKubeAPI, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "late-kubeconfig"
    sent = Sent()

    async def main():
        cfg = KubernetesSDConfig(role="node", kubeconfig_file=str(path))
        task = asyncio.create_task(KubernetesDiscoverer(cfg, "late").run(sent))
        try:
            await asyncio.sleep(0.5)
            assert not sent.batches and not task.done()
            api.write_kubeconfig(path)  # e.g. a volume mounted late
            await until(lambda: sent.batches, "discovery after the kubeconfig appeared")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    run(main())
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "cannot load kubeconfig" in errors[0]
    assert "node/primary-node" in sent.groups


def test_own_namespace_comes_from_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "namespace").write_text("monitoring\n")
    cfg = KubernetesSDConfig(role="pod", namespaces={"own_namespace": True, "names": ["a"]})
    assert KubernetesDiscoverer(cfg, service_account_dir=str(tmp_path))._namespaces() == [
        "a", "monitoring"]


# ---- churn -----------------------------------------------------------------------------------

def test_pod_churn(api: FakeKubeAPI, tmp_path: Path) -> None:
    pod = copy.deepcopy(api.objects("pods")[-1])  # traefik
    pod["metadata"] = {"name": "web-1", "namespace": "default", "labels": {"app": "web"}}
    del pod["status"]["podIP"]

    async def main():
        async with discovering(api, tmp_path, role="pod") as sent:
            api.add("pods", pod)  # scheduled, no IP yet: an empty group
            await until(lambda: "pod/default/web-1" in sent.groups, "new pod")
            empty = sent.groups["pod/default/web-1"]
            pod["status"]["podIP"] = "10.42.0.77"
            api.modify("pods", pod)
            await until(lambda: sent.groups["pod/default/web-1"].targets, "pod IP")
            running = sent.groups["pod/default/web-1"]
            api.delete("pods", "default", "web-1")
            await until(lambda: not sent.groups["pod/default/web-1"].targets, "deletion")
            return empty, running, sent

    empty, running, sent = run(main())
    assert empty.targets == ()
    assert [t["__address__"] for t in running.targets] == [
        "10.42.0.77:9100", "10.42.0.77:9000", "10.42.0.77:8000", "10.42.0.77:8443"]
    assert running.labels[M + "pod_label_app"] == "web"
    assert sent.groups["pod/default/web-1"] == TargetGroup("pod/default/web-1", ())
    assert all(len(batch) == 1 for batch in sent.batches[1:])  # only what changed is sent


def test_endpoints_follow_their_service_and_pods(api: FakeKubeAPI, tmp_path: Path) -> None:
    async def main():
        async with discovering(api, tmp_path, role="endpoints") as sent:
            svc = next(s for s in api.objects("services") if s["metadata"]["name"] == "kube-dns")
            svc["metadata"]["labels"]["tier"] = "dns"
            api.modify("services", svc)
            await until(lambda: M + "service_label_tier" in
                        sent.groups["endpoints/kube-system/kube-dns"].labels, "service label")
            pod = next(p for p in api.objects("pods") if p["metadata"]["name"] == COREDNS)
            pod["metadata"]["labels"]["canary"] = "yes"
            api.modify("pods", pod)
            await until(lambda: M + "pod_label_canary" in
                        sent.groups["endpoints/kube-system/kube-dns"].targets[0], "pod label")
            api.delete("endpoints", "kube-system", "kube-dns")
            await until(lambda: not sent.groups["endpoints/kube-system/kube-dns"].targets,
                        "deletion")
            return sent

    sent = run(main())
    assert all(len(batch) == 1 for batch in sent.batches[1:])


# ---- configuration ---------------------------------------------------------------------------

def test_api_server_with_credentials(api: FakeKubeAPI, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(api.token + "\n")

    async def main():
        async with discovering(api, tmp_path, role="node", api_server=api.url,
                               authorization={"credentials_file": str(token)}) as sent:
            return sent

    sent = run(main())
    assert "node/primary-node" in sent.groups
    assert set(api.authorizations) == {f"Bearer {api.token}"}


@pytest.mark.parametrize("config, message", [
    ({"api_server": "https://k:6443", "kubeconfig_file": "k"}, "simultaneously"),
    ({"bearer_token": "x"}, "provide the 'api_server' URL explicitly"),
    ({"kubeconfig_file": "k", "bearer_token": "x"}, "custom HTTP client configuration"),
    ({"api_server": "https://k", "namespaces": {"own_namespace": True}}, "own_namespace"),
    ({"selectors": [{"role": "service", "label": "a=b"}]}, "pod role supports only pod, node"),
    ({"role": "endpoints", "selectors": [{"role": "pod"}, {"role": "pod"}]}, "duplicated"),
    ({"selectors": [{"role": "pod", "label": "a b c"}]}, "invalid label selector"),
    ({"selectors": [{"role": "pod", "field": "spec.nodeName"}]}, "no operator"),
    ({"role": "nodes"}, "role"),
])
def test_config_errors(config: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KubernetesSDConfig(**{"role": "pod", **config})
