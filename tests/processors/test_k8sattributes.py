"""k8sattributes without an API server: config, rules, recorded objects → pod table → resources.

The Kubernetes objects are the recorded ones in ../shared/data/kubernetes (set A: a k3s cluster;
set B: minikube with StatefulSet and CronJob pods), fed to the watcher as its informers would.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from gateway.component import ComponentID, Host, Kind
from gateway.config.loader import load_config
from gateway.payload import Payload, RequestContext
from gateway.registry import lookup
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from processors.k8sattributes import association
from processors.k8sattributes.config import DEFAULT_METADATA, K8sAttributesConfig
from processors.k8sattributes.images import parse_image, repo_digest, service_version
from processors.k8sattributes.objects import Transforms
from processors.k8sattributes.podtable import PodTable
from processors.k8sattributes.processor import K8sAttributesProcessor
from processors.k8sattributes.rules import (
    Rules,
    cronjob_from_job,
    deployment_from_replicaset,
)
from processors.k8sattributes.watcher import Watcher, field_selector, label_selector

# Set A: pod name → (IP, uid)
COREDNS = ("coredns-56f6fc8fd7-p4x9z", "10.42.0.6", "dd820d56-5b83-42c5-955f-058aedc0ad27")
TRAEFIK = ("traefik-57b79cf995-qn4jm", "10.42.0.8", "5420ddca-c3f8-4d70-be48-aea999012ad1")
SVCLB = ("svclb-traefik-a6edc2ef-c2sjr", "10.42.0.7")


def cfg(**kw: Any) -> K8sAttributesConfig:
    return K8sAttributesConfig.model_validate(kw)


def items(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["items"]


def watcher_for(shared: Path, config: K8sAttributesConfig, *, replicasets: bool = True,
                telemetry: SelfTelemetry | None = None) -> Watcher:
    """A watcher holding recorded set A, as after its informers' first list."""
    k8s = shared / "kubernetes"
    w = Watcher(config, "k8sattributes", telemetry)
    if replicasets:
        w.load("replicasets", items(k8s / "replicasets.json"))
    for plural in ("namespaces", "nodes", "deployments", "daemonsets", "jobs"):
        w.load(plural, items(k8s / f"{plural}.json"))
    w.load("pods", items(k8s / "pods.json"))
    return w


def traces(*resources: dict[str, Any]) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for attrs in resources:
        rs = req.resource_spans.add()
        for key, value in attrs.items():
            kv = rs.resource.attributes.add()
            kv.key = key
            if isinstance(value, int):
                kv.value.int_value = value
            else:
                kv.value.string_value = value
        rs.scope_spans.add().spans.add(name="op", trace_id=b"\1" * 16, span_id=b"\2" * 8)
    return req


def attrs_of(resource: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in resource.attributes:
        which = kv.value.WhichOneof("value")
        if which == "array_value":
            out[kv.key] = [v.string_value for v in kv.value.array_value.values]
        else:
            out[kv.key] = getattr(kv.value, which) if which else None
    return out


class _Sink:
    def __init__(self) -> None:
        self.payloads: list[Payload] = []

    async def consume(self, payload: Payload) -> None:
        self.payloads.append(payload)


def run_processor(w: Watcher, request: Any, client_ip: str = "",
                  signal: Signal = Signal.TRACES, proc: K8sAttributesProcessor | None = None
                  ) -> tuple[list[dict[str, Any]], Payload]:
    """Push one request through a processor bound to `w`; the resources' attributes after."""
    sink = _Sink()
    if proc is None:
        proc = K8sAttributesProcessor(ComponentID("k8sattributes"), w.cfg, signal, sink)
        proc.watcher = w
    proc.next = sink
    raw = request.SerializeToString()
    payload = Payload(signal, raw, None, 1, RequestContext(client_address=client_ip))
    asyncio.run(proc.consume(payload))
    out = sink.payloads[0]
    msg = signal.request_type.FromString(out.raw)
    res = msg.resource_spans if signal is Signal.TRACES else msg.resource_logs
    return [attrs_of(r.resource) for r in res], out


# ---- config ---------------------------------------------------------------------------------

def test_defaults_match_the_collector() -> None:
    c = K8sAttributesConfig()
    assert c.auth_type == "serviceAccount"
    assert c.extract.metadata == list(DEFAULT_METADATA)
    assert {"k8s.pod.name", "k8s.pod.uid", "k8s.pod.start_time", "k8s.namespace.name",
            "k8s.deployment.name", "k8s.node.name", "container.image.name",
            "container.image.tag"} == set(c.extract.metadata)
    assert [p.name for p in c.exclude.pods] == ["jaeger-agent", "jaeger-collector"]
    assert c.wait_for_metadata is False and c.wait_for_metadata_timeout == 10.0
    assert c.pod_association == [] and c.passthrough is False


def test_registered_under_both_names() -> None:
    f = lookup(Kind.PROCESSOR, "k8sattributes")
    assert f is not None and f.mutates_data
    assert lookup(Kind.PROCESSOR, "k8s_attributes") is f


def test_collector_yaml_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE_NODE_NAME", "node-1")
    path = tmp_path / "c.yaml"
    path.write_text("""
receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}
processors:
  k8sattributes:
    auth_type: kubeConfig
    passthrough: false
    filter:
      node_from_env_var: KUBE_NODE_NAME
      labels: [{key: app, value: web, op: not-equals}, {key: tier, op: exists}]
      fields: [{key: status.phase, value: Running}]
    extract:
      metadata: [k8s.pod.name, k8s.pod.uid, k8s.deployment.name, k8s.namespace.name,
                 k8s.node.name, k8s.pod.start_time, k8s.cronjob.name, container.id]
      labels:
        - tag_name: app.label.component
          key: app.kubernetes.io/component
          from: pod
        - tag_name: $$1
          key_regex: kubernetes.io/(.*)
      annotations:
        - {tag_name: a2, key: annotation-two, from: namespace}
    pod_association:
      - sources: [{from: resource_attribute, name: k8s.pod.ip}]
      - sources: [{from: resource_attribute, name: k8s.pod.name},
                  {from: resource_attribute, name: k8s.namespace.name}]
      - sources: [{from: connection}]
    wait_for_metadata: true
    wait_for_metadata_timeout: 30s
  k8s_attributes/passthrough: {passthrough: true}
exporters: {clickhouse: {path: ./data}}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [k8sattributes, k8s_attributes/passthrough],
             exporters: [clickhouse]}
""")
    loaded = load_config(str(path))
    c = loaded.processors[ComponentID("k8sattributes")].config
    assert isinstance(c, K8sAttributesConfig)
    assert c.extract.labels[1].tag_name == "$1"  # $$ is the Collector's escape for $
    assert label_selector(c) == "app!=web,tier"
    assert field_selector(c) == "status.phase=Running,spec.nodeName=node-1"
    assert c.wait_for_metadata_timeout == 30.0
    assert loaded.processors[ComponentID("k8s_attributes", "passthrough")].config.passthrough


@pytest.mark.parametrize("bad, message", [
    ({"extract": {"metadata": ["k8s.pod.nam"]}}, '"k8s.pod.nam" is not a supported'),
    ({"extract": {"labels": [{"key": "a", "key_regex": "b"}]}}, "only one option"),
    ({"extract": {"labels": [{"tag_name": "x"}]}}, "one of key or key_regex"),
    ({"extract": {"labels": [{"key": "a", "from": "service"}]}}, "from"),
    ({"extract": {"annotations": [{"key_regex": "a(b"}]}}, "key_regex"),
    ({"pod_association": [{"sources": [{"from": "connection"}] * 5}]}, "limit is 4"),
    ({"pod_association": [{"sources": [{"from": "resource_attribute"}]}]}, "name is required"),
    ({"pod_association": [{"sources": [{"from": "ip"}]}]}, "from"),
    ({"filter": {"node_from_env_var": "OTELGW_TEST_UNSET_VAR"}}, "is not set"),
    ({"filter": {"fields": [{"key": "spec.nodeName", "op": "exists"}]}},
     "not a valid field filter operation"),
    ({"auth_type": "token"}, "auth_type"),
    ({"extract": {"regex": "x"}}, "regex"),
    ({"wait_for_metadata_timeout": "soon"}, "duration"),
])
def test_invalid_config_says_what_is_wrong(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        K8sAttributesConfig.model_validate(bad)
    assert message in str(exc.value)


def test_empty_exclude_list_means_the_defaults() -> None:
    patterns = cfg(exclude={"pods": []}).exclude.patterns()
    assert [p.pattern for p in patterns] == ["jaeger-agent", "jaeger-collector"]


# ---- rules ----------------------------------------------------------------------------------

def test_field_rule_names_and_backreferences() -> None:
    c = cfg(extract={"labels": [
        {"key": "app"},
        {"key": "team", "from": "namespace"},
        {"tag_name": "$1", "key_regex": "app\\.kubernetes\\.io/(.*)"},
        {"tag_name": "x.${part}.$$", "key_regex": "(?P<part>[a-z]+)/v"},
        {"key_regex": "env\\..*"},
        {"key_regex": "tier", "from": "deployment"},
    ]})
    r = Rules.from_config(c).labels
    assert r[0].name == "k8s.pod.labels.app"
    assert r[1].name == "k8s.namespace.labels.team"
    out: dict[str, str] = {}
    labels = {"app": "web", "app.kubernetes.io/name": "shop", "abc/v": "1", "env.prod": "yes",
              "env.empty": "", "tier": "front", "xapp.kubernetes.io/name": "no"}
    for rule in r:
        rule.extract(labels, out)
    assert out == {"k8s.pod.labels.app": "web", "name": "shop", "x.abc.$": "1",
                   "k8s.pod.labels.env.prod": "yes", "k8s.deployment.label.tier": "front"}
    # key_regex matches whole keys, and an empty value is not extracted through a regex
    assert "k8s.pod.labels.env.empty" not in out


def test_name_heuristics() -> None:
    assert deployment_from_replicaset("opentelemetry-collector-6c45f8d6f6") == \
        "opentelemetry-collector"
    assert deployment_from_replicaset("coredns-56f6fc8fd7") == "coredns"
    assert deployment_from_replicaset("web-6c45f8d6") == ""  # the hash has 10 characters
    assert deployment_from_replicaset("web-6C45F8D6F6") == ""
    assert deployment_from_replicaset("web") == ""
    assert cronjob_from_job("e2e-cronjob-29707813") == "e2e-cronjob"
    assert cronjob_from_job("helm-install-traefik") == ""


def test_only_needed_objects_are_watched() -> None:
    default = Rules.from_config(cfg())
    assert default.needs_replicasets and not default.needs_namespaces
    assert not default.needs_nodes and not default.needs_jobs
    heuristic = Rules.from_config(cfg(extract={"deployment_name_from_replicaset": True}))
    assert not heuristic.needs_replicasets
    minimal = Rules.from_config(cfg(extract={"metadata": ["k8s.pod.name"]}))
    assert not minimal.needs_replicasets and not minimal.needs_containers
    assert not minimal.needs_owners
    full = Rules.from_config(cfg(extract={
        "metadata": ["k8s.node.uid", "k8s.cronjob.uid", "k8s.cluster.uid"],
        "labels": [{"key": "a", "from": "deployment"}]}))
    assert full.needs_nodes and full.needs_jobs and full.needs_namespaces
    assert full.needs_replicasets  # a pod reaches its Deployment through its ReplicaSet


# ---- images ---------------------------------------------------------------------------------

@pytest.mark.parametrize("image, name, tag", [
    ("rancher/local-path-provisioner:v0.0.30", "docker.io/rancher/local-path-provisioner",
     "v0.0.30"),
    ("alpine", "docker.io/library/alpine", "latest"),
    ("example.com:5000/alpine/alpine:test", "example.com:5000/alpine/alpine", "test"),
    ("localhost/app", "localhost/app", "latest"),
    ("ghcr.io/open-telemetry/telemetrygen:0.112.0@sha256:" + "b" * 64,
     "ghcr.io/open-telemetry/telemetrygen", "0.112.0"),
    ("registry.k8s.io/pause@sha256:" + "c" * 64, "registry.k8s.io/pause", ""),
])
def test_image_names(image: str, name: str, tag: str) -> None:
    ref = parse_image(image)
    assert ref is not None and (ref.name, ref.tag) == (name, tag)


def test_bad_images_and_versions() -> None:
    assert parse_image("") is None and parse_image("Upper/Case") is None
    assert parse_image("a" * 64) is None
    assert service_version("nginx") == ""
    assert service_version("nginx:1.2@sha256:" + "d" * 64) == "1.2@sha256:" + "d" * 64
    assert repo_digest("docker-pullable://rancher/klipper@sha256:" + "e" * 64) == \
        "docker.io/rancher/klipper@sha256:" + "e" * 64
    assert repo_digest("sha256:" + "e" * 64) == ""


# ---- objects and the pod table ---------------------------------------------------------------

def test_transform_keeps_only_what_rules_need(shared_data: Path) -> None:
    pods = items(shared_data / "kubernetes" / "pods.json")
    minimal = Transforms(Rules.from_config(cfg(extract={"metadata": ["k8s.pod.name"]})))
    pod = minimal.pod(pods[0])
    assert pod is not None
    assert pod.attributes == {"k8s.pod.name": COREDNS[0]}
    assert pod.owners == () and pod.containers == {} and pod.container_ids == {}


def test_excluded_and_ignored_pods(shared_data: Path) -> None:
    obj = items(shared_data / "kubernetes" / "pods.json")[0]
    t = Transforms(Rules.from_config(cfg(exclude={"pods": [{"name": "^coredns-"}]})))
    assert t.pod(obj).ignore  # type: ignore[union-attr]
    t = Transforms(Rules.from_config(cfg()))
    assert not t.pod(obj).ignore  # type: ignore[union-attr]
    annotated = copy.deepcopy(obj)
    annotated["metadata"].setdefault("annotations", {})[
        "opentelemetry.io/k8s-processor/ignore"] = " True "
    assert t.pod(annotated).ignore  # type: ignore[union-attr]


def test_identifiers_of_a_pod(shared_data: Path) -> None:
    rules = association.compile_rules(cfg(pod_association=[
        {"sources": [{"from": "resource_attribute", "name": "k8s.pod.name"},
                     {"from": "resource_attribute", "name": "k8s.namespace.name"}]},
        {"sources": [{"from": "resource_attribute", "name": "container.id"}]},
    ]).pod_association)
    t = Transforms(Rules.from_config(cfg(extract={"metadata": ["container.id"]})))
    pod = t.pod(items(shared_data / "kubernetes" / "pods.json")[-2])  # svclb, 2 containers
    assert pod is not None and pod.name == SVCLB[0]
    ids = association.for_pod(pod, rules, lambda p, n: "")
    assert ((association.RESOURCE_ATTRIBUTE, "k8s.pod.name", SVCLB[0]),
            (association.RESOURCE_ATTRIBUTE, "k8s.namespace.name", "kube-system")) in ids
    assert sum(1 for i in ids if i[0][1] == "container.id") == 2
    assert ((association.CONNECTION, "", SVCLB[1]),) in ids
    assert ((association.RESOURCE_ATTRIBUTE, "k8s.pod.ip", SVCLB[1]),) in ids


class _Strings(dict):  # type: ignore[type-arg]
    def string(self, key: str) -> str:
        return str(self.get(key, ""))


def test_identifier_of_a_resource() -> None:
    def by(attrs: dict[str, str], ip: str, rules: Any) -> Any:
        return association.from_resource(_Strings(attrs), ip, rules)
    assert by({}, "10.0.0.1", ()) == (("connection", "", "10.0.0.1"),)
    # without rules a k8s.pod.ip attribute (set by an agent in passthrough mode) wins
    assert by({"k8s.pod.ip": "10.0.0.9"}, "10.0.0.1", ()) == (("connection", "", "10.0.0.9"),)
    assert by({"host.name": "10.0.0.7"}, "", ()) == (("connection", "", "10.0.0.7"),)
    assert by({"host.name": "web-1"}, "", ()) == ()
    rules = association.compile_rules(cfg(pod_association=[
        {"sources": [{"from": "resource_attribute", "name": "k8s.pod.uid"}]},
        {"sources": [{"from": "resource_attribute", "name": "host.name"}]},
        {"sources": [{"from": "connection"}]}]).pod_association)
    assert by({"k8s.pod.uid": "u1"}, "10.0.0.1", rules) == (
        ("resource_attribute", "k8s.pod.uid", "u1"),)
    assert by({"host.name": "web-1"}, "10.0.0.1", rules) == (("connection", "", "10.0.0.1"),)
    assert by({}, "", rules) == ()


def _pod(t: Transforms, obj: dict[str, Any], **status: Any) -> Any:
    obj = copy.deepcopy(obj)
    obj["status"].update(status)
    return t.pod(obj)


def test_pod_table_grace_period_and_ip_reuse(shared_data: Path) -> None:
    now = [1000.0]
    table = PodTable(grace_period=120, clock=lambda: now[0])
    t = Transforms(Rules.from_config(cfg()))
    objs = items(shared_data / "kubernetes" / "pods.json")
    old = _pod(t, objs[0], startTime="2025-12-10T17:26:04Z")
    key = ((association.CONNECTION, "", COREDNS[1]),)
    table.put(old, [key])
    table.remove(old, [key])
    now[0] += 119
    assert table.expire() == 0 and table.get(key) is old  # late data still finds it
    now[0] += 2
    assert table.expire() == 1 and table.get(key) is None

    # the IP moves to a newer pod; a late event about the older one must not take it back
    newer = _pod(t, objs[3], podIP=COREDNS[1], startTime="2025-12-11T00:00:00Z")
    table.put(newer, [key])
    table.put(old, [key])
    assert table.get(key) is newer
    # deleting the older pod does not forget the newer one
    table.remove(old, [key])
    now[0] += 500
    table.expire()
    assert table.get(key) is newer
    # re-added within the grace period: the queued delete must not drop it
    table.remove(newer, [key])
    again = _pod(t, objs[3], podIP=COREDNS[1], startTime="2025-12-11T00:00:00Z")
    table.put(again, [key])
    now[0] += 500
    table.expire()
    assert table.get(key) is again


# ---- the processor over recorded objects ------------------------------------------------------

def test_association_by_connection_ip(shared_data: Path) -> None:
    tel = SelfTelemetry()
    w = watcher_for(shared_data, cfg(), telemetry=tel)
    [attrs], _ = run_processor(w, traces({"service.name": "dns"}), client_ip=COREDNS[1])
    assert attrs == {
        "service.name": "dns", "k8s.pod.name": COREDNS[0], "k8s.pod.uid": COREDNS[2],
        "k8s.namespace.name": "kube-system", "k8s.node.name": "primary-node",
        "k8s.pod.start_time": "2025-12-10T17:26:04Z", "k8s.deployment.name": "coredns",
        "container.image.name": "docker.io/rancher/mirrored-coredns-coredns",
        "container.image.tag": "1.11.3"}
    body, _ = tel.exposition()
    assert b'otelcol_otelsvc_k8s_pod_added_total{processor="k8sattributes"} 7.0' in body
    assert b'otelcol_otelsvc_k8s_replicaset_added_total{processor="k8sattributes"} 4.0' in body


def test_lookup_miss_and_untouched_payload(shared_data: Path) -> None:
    tel = SelfTelemetry()
    w = watcher_for(shared_data, cfg(), telemetry=tel)
    req = traces({"service.name": "x"})
    [attrs], out = run_processor(w, req, client_ip="192.0.2.1")
    assert attrs == {"service.name": "x"}
    assert out.raw == req.SerializeToString()  # nothing added: the received bytes go on
    body, _ = tel.exposition()
    assert b'otelcol_otelsvc_k8s_ip_lookup_miss_total{processor="k8sattributes"} 1.0' in body


def test_existing_attributes_are_kept_empty_ones_filled(shared_data: Path) -> None:
    w = watcher_for(shared_data, cfg())
    [attrs], _ = run_processor(w, traces(
        {"k8s.pod.name": "from-sdk", "k8s.namespace.name": "", "k8s.node.name": 7}),
        client_ip=COREDNS[1])
    assert attrs["k8s.pod.name"] == "from-sdk"
    assert attrs["k8s.namespace.name"] == "kube-system"
    assert attrs["k8s.node.name"] == 7  # a non-empty value of another type is kept too
    assert attrs["k8s.deployment.name"] == "coredns"
    # without association rules a k8s.pod.uid attribute alone is not looked up (as upstream)
    [attrs], _ = run_processor(w, traces({"k8s.pod.uid": COREDNS[2]}))
    assert "k8s.pod.name" not in attrs


def test_rules_in_order_first_resolvable_wins(shared_data: Path) -> None:
    c = cfg(pod_association=[
        {"sources": [{"from": "resource_attribute", "name": "k8s.pod.name"},
                     {"from": "resource_attribute", "name": "k8s.namespace.name"}]},
        {"sources": [{"from": "resource_attribute", "name": "k8s.pod.uid"}]},
        {"sources": [{"from": "connection"}]}])
    w = watcher_for(shared_data, c)
    res, _ = run_processor(w, traces(
        {"k8s.pod.name": TRAEFIK[0], "k8s.namespace.name": "kube-system"},
        {"k8s.pod.uid": COREDNS[2]},
        {"k8s.pod.name": TRAEFIK[0]},  # half a rule: falls through to the connection
        # the first rule resolves but names no pod: no other rule is tried
        {"k8s.pod.name": "gone", "k8s.namespace.name": "kube-system"}),
        client_ip=COREDNS[1])
    assert res[0]["k8s.pod.uid"] == TRAEFIK[2] and res[0]["k8s.deployment.name"] == "traefik"
    assert res[1]["k8s.pod.name"] == COREDNS[0]
    assert res[2]["k8s.pod.uid"] == COREDNS[2]
    assert "k8s.pod.uid" not in res[3]


def test_deployment_needs_the_replicaset_or_the_heuristic(shared_data: Path) -> None:
    w = watcher_for(shared_data, cfg(), replicasets=False)
    [attrs], _ = run_processor(w, traces({}), client_ip=TRAEFIK[1])
    assert attrs["k8s.pod.name"] == TRAEFIK[0] and "k8s.deployment.name" not in attrs
    # a ReplicaSet seen after its pods still names their Deployment
    w.load("replicasets", items(shared_data / "kubernetes" / "replicasets.json"))
    [attrs], _ = run_processor(w, traces({}), client_ip=TRAEFIK[1])
    assert attrs["k8s.deployment.name"] == "traefik"
    # or, with deployment_name_from_replicaset, from the ReplicaSet's name alone
    h = watcher_for(shared_data, cfg(extract={"deployment_name_from_replicaset": True,
                                              "metadata": ["k8s.deployment.name"]}),
                    replicasets=False)
    assert not h.rules.needs_replicasets
    [attrs], _ = run_processor(h, traces({}), client_ip=TRAEFIK[1])
    assert attrs == {"k8s.deployment.name": "traefik"}


def test_owner_container_and_label_extraction(shared_data: Path) -> None:
    c = cfg(extract={
        "metadata": ["k8s.pod.name", "k8s.replicaset.name", "k8s.replicaset.uid",
                     "k8s.deployment.name", "k8s.deployment.uid", "k8s.daemonset.name",
                     "k8s.job.name", "k8s.node.uid", "k8s.cluster.uid", "k8s.container.name",
                     "container.id", "container.image.name", "container.image.repo_digests",
                     "k8s.pod.ip", "service.namespace"],
        "labels": [{"key": "app"}, {"tag_name": "node.arch", "key": "kubernetes.io/arch",
                                    "from": "node"},
                   {"key_regex": "kubernetes.io/metadata.name", "from": "namespace"},
                   {"tag_name": "dep.$1", "key_regex": "app\\.kubernetes\\.io/(.*)",
                    "from": "deployment"}],
        "annotations": [{"tag_name": "scrape", "key": "prometheus.io/scrape"}]})
    w = watcher_for(shared_data, c)
    res, _ = run_processor(w, traces(
        {"k8s.pod.ip": TRAEFIK[1]},
        {"k8s.pod.ip": SVCLB[1], "k8s.container.name": "lb-tcp-443"},
        {"k8s.pod.ip": SVCLB[1]},  # two containers, none named: no container attributes
        {"k8s.pod.ip": SVCLB[1], "container.id": "4b7f34bbcf1758cc8f54938fdc01b338af6ceecd6a3b"
                                                 "e0181170e835993ee8fd"}))
    traefik, lb443, lb, lb80 = res
    assert traefik["k8s.replicaset.name"] == "traefik-57b79cf995"
    assert traefik["k8s.deployment.name"] == "traefik"
    assert traefik["k8s.deployment.uid"]
    assert traefik["scrape"] == "true"
    assert traefik["node.arch"] == "amd64"
    assert traefik["k8s.namespace.labels.kubernetes.io/metadata.name"] == "kube-system"
    assert traefik["k8s.node.uid"] and traefik["k8s.cluster.uid"]
    assert traefik["service.namespace"] == "kube-system"
    assert traefik["dep.name"] == "traefik"  # from the Deployment object's labels
    assert traefik["container.image.repo_digests"] == [
        "docker.io/rancher/mirrored-library-traefik@sha256:"
        "b19934b3f8e03e213e258e69d57376fd0c4441ea04a518313cab2835fe9b92b3"]
    assert lb443["k8s.daemonset.name"] == "svclb-traefik-a6edc2ef"
    assert lb443["k8s.pod.labels.app"] == "svclb-traefik-a6edc2ef"
    assert lb443["container.id"] == \
        "f2e962a53f28f6a376f8212ea5fbfb1398b6fb9892bfc294465b8640a93c9fe3"
    assert "container.id" not in lb and "k8s.container.name" not in lb
    assert lb80["k8s.container.name"] == "lb-tcp-80"


def test_statefulset_and_cronjob_pods(shared_data: Path) -> None:
    c = cfg(extract={"metadata": ["k8s.pod.name", "k8s.statefulset.name", "k8s.statefulset.uid",
                                  "k8s.job.name", "k8s.cronjob.name", "service.name",
                                  "container.id"]})
    w = Watcher(c, "k8sattributes")
    w.load("pods", items(shared_data / "kubernetes" / "minikube-v1.35-statefulsets" /
                         "pods.json"))
    res, _ = run_processor(w, traces({"k8s.pod.ip": "10.244.0.12"},
                                     {"k8s.pod.ip": "10.244.0.13"},
                                     {"k8s.pod.ip": "10.244.0.5",  # restartCount 2
                                      "k8s.container.restart_count": "2"}))
    assert res[0]["k8s.statefulset.name"] == "e2e-statefulset"
    assert res[0]["service.name"] == "e2e-statefulset"
    assert res[1]["k8s.job.name"] == "e2e-cronjob-29707813"
    assert res[1]["k8s.cronjob.name"] == "e2e-cronjob"
    assert res[1]["service.name"] == "e2e-cronjob"
    assert res[2]["container.id"] == \
        "4295ac6e1b848c84dc1db036a94ea8c97389b10975fc3f6a063839520434b538"


def test_host_network_pods_are_not_found_by_ip(shared_data: Path) -> None:
    w = Watcher(cfg(), "k8sattributes")
    w.load("pods", items(shared_data / "kubernetes" / "minikube-v1.35-statefulsets" /
                         "pods.json"))
    [attrs], _ = run_processor(w, traces({}), client_ip="192.168.67.2")  # the node's IP
    assert "k8s.pod.name" not in attrs


def test_pod_ip_from_connection_and_passthrough() -> None:
    passthrough = cfg(passthrough=True)
    sink = _Sink()
    proc = K8sAttributesProcessor(ComponentID("k8sattributes"), passthrough, Signal.LOGS, sink)
    asyncio.run(proc.start(Host(telemetry=SelfTelemetry())))
    assert proc.watcher is None  # no API access at all
    req = ExportLogsServiceRequest()
    req.resource_logs.add().scope_logs.add().log_records.add()
    asyncio.run(proc.consume(Payload(Signal.LOGS, req.SerializeToString(), None, 1,
                                     RequestContext(client_address="10.1.2.3"))))
    out = Signal.LOGS.request_type.FromString(sink.payloads[0].raw)
    assert attrs_of(out.resource_logs[0].resource) == {"k8s.pod.ip": "10.1.2.3"}


def test_update_moves_the_ip_and_delete_keeps_it_for_the_grace_period(
        shared_data: Path) -> None:
    w = watcher_for(shared_data, cfg())
    t = w.transforms
    obj = items(shared_data / "kubernetes" / "pods.json")[0]
    before = t.pod(obj)
    moved = _pod(t, obj, podIP="10.42.0.99", podIPs=[{"ip": "10.42.0.99"}])
    w.handlers["pods"][2]("kube-system/x", before, moved)
    [new], _ = run_processor(w, traces({}), client_ip="10.42.0.99")
    assert new["k8s.pod.name"] == COREDNS[0]
    w.handlers["pods"][3]("kube-system/x", moved)
    [late], _ = run_processor(w, traces({}), client_ip="10.42.0.99")
    assert late["k8s.pod.name"] == COREDNS[0]  # deleted, but within the grace period
    w.table.grace_period = 0
    w.table.expire()
    [gone], _ = run_processor(w, traces({}), client_ip="10.42.0.99")
    assert "k8s.pod.name" not in gone


def test_cached_additions_follow_cache_changes(shared_data: Path) -> None:
    w = watcher_for(shared_data, cfg(extract={"metadata": ["k8s.pod.name", "k8s.deployment.name"],
                                              "labels": [{"key": "team", "from": "namespace"}]}),
                    replicasets=False)
    proc = K8sAttributesProcessor(ComponentID("k8sattributes"), w.cfg, Signal.TRACES, _Sink())
    proc.watcher = w
    req = traces({}, {})  # two resources of one pod: the second uses the cached additions
    res, _ = run_processor(w, req, client_ip=TRAEFIK[1], proc=proc)
    assert res[0] == res[1] == {"k8s.pod.name": TRAEFIK[0]}
    w.load("replicasets", items(shared_data / "kubernetes" / "replicasets.json"))
    ns = copy.deepcopy(items(shared_data / "kubernetes" / "namespaces.json")[-1])
    ns["metadata"]["labels"]["team"] = "platform"
    w.handlers["namespaces"][2]("kube-system", w.namespaces["kube-system"],
                                w.transforms.namespace(ns))
    res, _ = run_processor(w, req, client_ip=TRAEFIK[1], proc=proc)
    assert res[0] == res[1] == {"k8s.pod.name": TRAEFIK[0], "k8s.deployment.name": "traefik",
                                "k8s.namespace.labels.team": "platform"}
    # a resource that already has one of the keys takes the careful path, with the same result
    res, _ = run_processor(w, traces({"k8s.pod.name": "mine"}), client_ip=TRAEFIK[1], proc=proc)
    assert res[0] == {"k8s.pod.name": "mine", "k8s.deployment.name": "traefik",
                      "k8s.namespace.labels.team": "platform"}


def test_otel_annotations_and_service_attributes(shared_data: Path) -> None:
    c = cfg(extract={"otel_annotations": True,
                     "metadata": ["k8s.pod.name", "service.name", "service.namespace",
                                  "service.version", "service.instance.id"]})
    w = Watcher(c, "k8sattributes")
    pods = items(shared_data / "kubernetes" / "pods.json")
    w.load("replicasets", items(shared_data / "kubernetes" / "replicasets.json"))
    annotated = copy.deepcopy(pods[0])  # coredns
    annotated["metadata"]["annotations"] = {
        "resource.opentelemetry.io/service.name": "dns",
        "resource.opentelemetry.io/deployment.environment.name": "prod"}
    w.load("pods", [annotated, pods[3]])  # and local-path-provisioner, not annotated
    res, _ = run_processor(w, traces({"k8s.pod.ip": COREDNS[1]},
                                     {"k8s.pod.ip": "10.42.0.5"}))
    assert res[0]["service.name"] == "dns"  # the annotation wins
    assert res[0]["deployment.environment.name"] == "prod"
    assert res[0]["service.namespace"] == "kube-system"
    assert res[0]["service.version"] == "1.11.3"  # the image tag of its only container
    assert res[0]["service.instance.id"] == f"kube-system.{COREDNS[0]}.coredns"
    assert res[1]["service.name"] == "local-path-provisioner"  # its Deployment


def test_selectors_are_escaped_and_checked() -> None:
    c = cfg(filter={"fields": [{"key": "metadata.name", "value": "a,b=c"}]})
    assert field_selector(c) == "metadata.name=a\\,b\\=c"
    with pytest.raises(ValidationError, match="not a valid label"):
        cfg(filter={"labels": [{"key": "app", "value": "not valid!"}]})
