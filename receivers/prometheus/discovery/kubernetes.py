"""`kubernetes_sd_configs`: targets from the Kubernetes API, with Prometheus's __meta_kubernetes_*
labels, for the roles node, pod, service, endpoints, endpointslice and ingress.

Follows Prometheus's discovery/kubernetes (v3): the same sources ("pod/ns/name", "svc/ns/name",
"endpoints/ns/name", "endpointslice/ns/name", "node/name", "ingress/ns/name"), the same target
addresses and label sets, the same label-name sanitization (every character outside
[a-zA-Z0-9_] becomes "_", and each label/annotation also gives a `…present_…="true"` label), the
same config checks. Like Prometheus it sends nothing until every informer it needs has listed
once, then one group per object, and afterwards the group of each object that changed — also
when a related object changed (the service of an endpoints object, the pod behind an endpoint,
the node or namespace whose metadata is attached). A deleted object's group is sent empty.

Objects are kept reduced (see the _slim_* transforms): only the fields that make up labels.
Status churn that changes none of them triggers nothing.

Differences: the ingress role reads networking.k8s.io/v1 only (as Prometheus v3); endpoints and
endpointslice groups are also rebuilt when any field of a backing pod changes (Prometheus only on
a phase change), which gives the same labels, sooner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import Field, model_validator

from gateway.kube import resources as R
from gateway.kube.client import SERVICE_ACCOUNT_DIR, KubeClient, KubeError
from gateway.kube import informer as _informer
from gateway.kube.informer import Informer
from gateway.kube.selectors import parse_field_selector, parse_label_selector
from receivers.prometheus.discovery import TargetGroup
from receivers.prometheus.httpconfig import HTTPClient, HTTPClientConfig, PromConfig

log = logging.getLogger(__name__)

Role = Literal["node", "pod", "service", "endpoints", "endpointslice", "ingress"]

# ---- configuration ---------------------------------------------------------------------------


class NamespaceDiscovery(PromConfig):
    own_namespace: bool = Field(False, description="Include the gateway's own namespace.")
    names: list[str] = Field(default_factory=list, description="Namespaces to watch "
                                                               "(empty: all).")


class Selector(PromConfig):
    role: Role = Field(..., description="Role the selector applies to.")
    label: str = Field("", description="Label selector, as kubectl -l.")
    field: str = Field("", description="Field selector, as kubectl --field-selector.")


class AttachMetadata(PromConfig):
    node: bool = Field(False, description="Attach node labels to pod/endpoints targets.")
    namespace: bool = Field(False, description="Attach namespace labels and annotations.")
    deployment: bool = Field(False, description="Pod role: attach "
                                                "__meta_kubernetes_pod_deployment_name (reads "
                                                "ReplicaSets).")
    job: bool = Field(False, description="Pod role: attach __meta_kubernetes_pod_job_name.")
    cronjob: bool = Field(False, description="Pod role: attach __meta_kubernetes_pod_cronjob_name "
                                             "(reads Jobs).")


# Which selector roles each role accepts (Prometheus's allowedSelectors).
_ALLOWED_SELECTORS: dict[str, tuple[str, ...]] = {
    "pod": ("pod", "node"), "service": ("service",), "node": ("node",),
    "endpoints": ("pod", "service", "endpoints"),
    "endpointslice": ("pod", "service", "endpointslice"), "ingress": ("ingress",),
}


class KubernetesSDConfig(HTTPClientConfig):
    api_server: str = Field("", description="API server URL; empty: in-cluster or kubeconfig.")
    role: Role = Field(..., description="What to discover: node, pod, service, endpoints, "
                                        "endpointslice.")
    kubeconfig_file: str = Field("", description="Path to a kubeconfig (not with api_server).")
    namespaces: NamespaceDiscovery = Field(default_factory=NamespaceDiscovery,
                                           description="Namespaces to discover in.")
    selectors: list[Selector] = Field(default_factory=list,
                                      description="Label/field selectors per role.")
    attach_metadata: AttachMetadata = Field(default_factory=AttachMetadata,
                                            description="Extra metadata to attach.")

    @model_validator(mode="after")
    def _check(self) -> KubernetesSDConfig:
        custom_http = (self.model_dump(include=set(HTTPClientConfig.model_fields))
                       != HTTPClientConfig().model_dump())
        if self.api_server and self.kubeconfig_file:
            raise ValueError("cannot use 'kubeconfig_file' and 'api_server' simultaneously")
        if self.kubeconfig_file and custom_http:
            raise ValueError("cannot use a custom HTTP client configuration together with "
                             "'kubeconfig_file'")
        if not self.api_server and custom_http:
            raise ValueError("to use custom HTTP client configuration please provide the "
                             "'api_server' URL explicitly")
        if self.api_server and self.namespaces.own_namespace:
            raise ValueError("cannot use 'api_server' and 'namespaces.own_namespace' "
                             "simultaneously")
        if self.kubeconfig_file and self.namespaces.own_namespace:
            raise ValueError("cannot use 'kubeconfig_file' and 'namespaces.own_namespace' "
                             "simultaneously")
        seen: set[str] = set()
        allowed = _ALLOWED_SELECTORS[self.role]
        for sel in self.selectors:
            if sel.role in seen:
                raise ValueError(f"duplicated selector role: {sel.role}")
            seen.add(sel.role)
            if sel.role not in allowed:
                raise ValueError(f"{self.role} role supports only {', '.join(allowed)} "
                                 f"selectors")
            parse_label_selector(sel.label)
            parse_field_selector(sel.field)
        return self


# ---- labels ----------------------------------------------------------------------------------

META = "__meta_kubernetes_"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """Prometheus's strutil.SanitizeLabelName."""
    return _INVALID.sub("_", name)


def join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bool(value: Any) -> str:
    return "true" if value else "false"


def add_object_labels(ls: dict[str, str], meta: dict, resource: str) -> None:
    for k, v in (meta.get("labels") or {}).items():
        name = sanitize(k)
        ls[f"{META}{resource}_label_{name}"] = v
        ls[f"{META}{resource}_labelpresent_{name}"] = "true"
    for k, v in (meta.get("annotations") or {}).items():
        name = sanitize(k)
        ls[f"{META}{resource}_annotation_{name}"] = v
        ls[f"{META}{resource}_annotationpresent_{name}"] = "true"


def add_object_meta_labels(ls: dict[str, str], meta: dict, role: str) -> None:
    ls[f"{META}{role}_name"] = meta.get("name", "")
    add_object_labels(ls, meta, role)


def controller_of(meta: dict) -> dict | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


# ---- reduced objects (what the labels need, nothing else) -------------------------------------

def _slim_meta(meta: dict, *, owners: bool = False) -> dict:
    out = {k: meta[k] for k in ("name", "namespace", "uid", "labels", "annotations") if k in meta}
    if owners and (ctrl := controller_of(meta)):
        out["ownerReferences"] = [{"kind": ctrl.get("kind", ""), "name": ctrl.get("name", ""),
                                   "controller": True}]
    return out


def _slim_containers(containers: list | None) -> list[dict]:
    return [{"name": c.get("name", ""), "image": c.get("image", ""),
             "ports": [{"name": p.get("name", ""), "containerPort": p.get("containerPort", 0),
                        "protocol": p.get("protocol", "")} for p in c.get("ports") or []]}
            for c in containers or []]


def slim_pod(pod: dict) -> dict:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ready = [{"type": "Ready", "status": c.get("status", "")}
             for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return {
        "metadata": _slim_meta(pod.get("metadata") or {}, owners=True),
        "spec": {"nodeName": spec.get("nodeName", ""),
                 "containers": _slim_containers(spec.get("containers")),
                 "initContainers": _slim_containers(spec.get("initContainers"))},
        "status": {"podIP": status.get("podIP", ""), "hostIP": status.get("hostIP", ""),
                   "phase": status.get("phase", ""), "conditions": ready[:1],
                   **{k: [{"name": s.get("name", ""), "containerID": s.get("containerID", "")}
                          for s in status.get(k) or []]
                      for k in ("containerStatuses", "initContainerStatuses")}},
    }


def slim_node(node: dict) -> dict:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    return {"metadata": _slim_meta(node.get("metadata") or {}),
            "spec": {"providerID": spec.get("providerID", "")},
            "status": {"addresses": status.get("addresses") or [],
                       "conditions": [{"type": c.get("type", ""), "status": c.get("status", "")}
                                      for c in status.get("conditions") or []],
                       "daemonEndpoints": status.get("daemonEndpoints") or {}}}


def slim_service(svc: dict) -> dict:
    spec = svc.get("spec") or {}
    keep = ("ports", "type", "clusterIP", "externalName", "loadBalancerIP", "ipFamilyPolicy",
            "ipFamilies")
    return {"metadata": _slim_meta(svc.get("metadata") or {}),
            "spec": {k: spec[k] for k in keep if k in spec},
            "status": {"loadBalancer": (svc.get("status") or {}).get("loadBalancer") or {}}}


def slim_meta_only(obj: dict) -> dict:
    return {"metadata": _slim_meta(obj.get("metadata") or {}, owners=True)}


def slim_endpoints(obj: dict) -> dict:
    return {"metadata": _slim_meta(obj.get("metadata") or {}), "subsets": obj.get("subsets") or []}


def slim_endpointslice(obj: dict) -> dict:
    return {"metadata": _slim_meta(obj.get("metadata") or {}),
            **{k: obj.get(k) for k in ("addressType", "endpoints", "ports")}}


def slim_ingress(obj: dict) -> dict:
    return {"metadata": _slim_meta(obj.get("metadata") or {}), "spec": obj.get("spec") or {}}


# ---- target groups, one builder per role ----------------------------------------------------

Lookup = Callable[[str], "dict | None"]


class Context:
    """The stores a builder reads besides its own object; absent stores mean 'not attached'."""

    def __init__(self, *, nodes: Lookup | None = None, namespaces: Lookup | None = None,
                 pods: Lookup | None = None, services: Lookup | None = None,
                 replicasets: Lookup | None = None, jobs: Lookup | None = None,
                 attach: AttachMetadata | None = None) -> None:
        self.nodes, self.namespaces, self.pods, self.services = nodes, namespaces, pods, services
        self.replicasets, self.jobs = replicasets, jobs
        self.attach = attach or AttachMetadata()

    def node_labels(self, ls: dict[str, str], node_name: str | None) -> None:
        if self.nodes is None or not node_name:
            return
        node = self.nodes(node_name)
        if node is not None:
            add_object_meta_labels(ls, node["metadata"], "node")

    def namespace_labels(self, ls: dict[str, str], namespace: str) -> None:
        if self.namespaces is None:
            return
        ns = self.namespaces(namespace)
        if ns is not None:
            add_object_labels(ls, ns["metadata"], "namespace")


def pod_labels(pod: dict, ctx: Context) -> dict[str, str]:
    meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
    ready = next((c["status"].lower() for c in status.get("conditions") or []
                  if c.get("type") == "Ready"), "unknown")
    ls = {f"{META}pod_ip": status.get("podIP", ""), f"{META}pod_ready": ready,
          f"{META}pod_phase": status.get("phase", ""),
          f"{META}pod_node_name": spec.get("nodeName", ""),
          f"{META}pod_host_ip": status.get("hostIP", ""), f"{META}pod_uid": meta.get("uid", "")}
    add_object_meta_labels(ls, meta, "pod")
    ctrl = controller_of(meta)
    if ctrl is None:
        return ls
    kind, name, ns = ctrl.get("kind", ""), ctrl.get("name", ""), meta.get("namespace", "")
    if kind:
        ls[f"{META}pod_controller_kind"] = kind
    if name:
        ls[f"{META}pod_controller_name"] = name
    if kind == "ReplicaSet" and ctx.attach.deployment and ctx.replicasets is not None:
        rs = ctx.replicasets(f"{ns}/{name}")
        owner = controller_of(rs["metadata"]) if rs else None
        if owner and owner.get("kind") == "Deployment":
            ls[f"{META}pod_deployment_name"] = owner.get("name", "")
    elif kind == "Job":
        if ctx.attach.job:
            ls[f"{META}pod_job_name"] = name
        if ctx.attach.cronjob and ctx.jobs is not None:
            job = ctx.jobs(f"{ns}/{name}")
            owner = controller_of(job["metadata"]) if job else None
            if owner and owner.get("kind") == "CronJob":
                ls[f"{META}pod_cronjob_name"] = owner.get("name", "")
    return ls


def _containers(pod: dict) -> list[tuple[dict, bool]]:
    spec = pod["spec"]
    return ([(c, False) for c in spec.get("containers") or []]
            + [(c, True) for c in spec.get("initContainers") or []])


def build_pod(pod: dict, ctx: Context) -> TargetGroup:
    meta, status = pod["metadata"], pod["status"]
    source = f"pod/{meta.get('namespace', '')}/{meta.get('name', '')}"
    ip = status.get("podIP", "")
    node_name = pod["spec"].get("nodeName", "")
    # No IP yet (starting, evicted); or on a node filtered out by the node selectors.
    if not ip or (ctx.nodes is not None and ctx.nodes(node_name) is None):
        return TargetGroup(source, ())
    labels = pod_labels(pod, ctx)
    labels[f"{META}namespace"] = meta.get("namespace", "")
    ctx.node_labels(labels, node_name)
    ctx.namespace_labels(labels, meta.get("namespace", ""))
    ids = {(init, s.get("name")): s.get("containerID", "")
           for init, key in ((False, "containerStatuses"), (True, "initContainerStatuses"))
           for s in status.get(key) or []}
    targets = []
    for c, init in _containers(pod):
        base = {f"{META}pod_container_name": c.get("name", ""),
                f"{META}pod_container_id": ids.get((init, c.get("name")), ""),
                f"{META}pod_container_image": c.get("image", ""),
                f"{META}pod_container_init": _bool(init)}
        if not c.get("ports"):
            # No declared port: the bare pod IP; relabeling is expected to add one.
            targets.append({"__address__": ip, **base})
            continue
        for p in c["ports"]:
            port = str(p.get("containerPort", 0))
            targets.append({"__address__": join_host_port(ip, port), **base,
                            f"{META}pod_container_port_number": port,
                            f"{META}pod_container_port_name": p.get("name", ""),
                            f"{META}pod_container_port_protocol": p.get("protocol", "")})
    return TargetGroup(source, tuple(targets), labels)


def node_address(node: dict) -> tuple[str, dict[str, str]]:
    """The address Prometheus picks (InternalIP, InternalDNS, ExternalIP, ExternalDNS,
    LegacyHostIP, Hostname) and the first address of each type."""
    first: dict[str, str] = {}
    for a in node["status"].get("addresses") or []:
        first.setdefault(a.get("type", ""), a.get("address", ""))
    for kind in ("InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP",
                 "Hostname"):
        if kind in first:
            return first[kind], first
    return "", first


def build_node(node: dict, ctx: Context) -> TargetGroup | None:
    meta = node["metadata"]
    addr, by_type = node_address(node)
    if not addr:
        log.warning("kubernetes_sd: no address for node %s", meta.get("name"))
        return None  # as Prometheus: no update for a node without an address
    labels = {f"{META}node_provider_id": node["spec"].get("providerID", "")}
    for cond in node["status"].get("conditions") or []:
        labels[f"{META}node_condition_{sanitize(cond['type'].lower())}"] = \
            cond.get("status", "").lower()
    add_object_meta_labels(labels, meta, "node")
    port = ((node["status"].get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get(
        "Port", 0)
    target = {"__address__": join_host_port(addr, port), "instance": meta.get("name", "")}
    for kind, value in by_type.items():
        target[sanitize(f"{META}node_address_{kind}")] = value
    return TargetGroup(f"node/{meta.get('name', '')}", (target,), labels)


def service_labels(svc: dict) -> dict[str, str]:
    ls = {f"{META}namespace": svc["metadata"].get("namespace", "")}
    add_object_meta_labels(ls, svc["metadata"], "service")
    return ls


def build_service(svc: dict, ctx: Context) -> TargetGroup:
    meta, spec = svc["metadata"], svc["spec"]
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    labels = service_labels(svc)
    ctx.namespace_labels(labels, ns)
    kind = spec.get("type", "")
    targets = []
    for p in spec.get("ports") or []:
        port = str(p.get("port", 0))
        t = {"__address__": join_host_port(f"{name}.{ns}.svc", port),
             f"{META}service_port_name": p.get("name", ""),
             f"{META}service_port_number": port,
             f"{META}service_port_protocol": p.get("protocol", ""),
             f"{META}service_type": kind}
        if kind == "ExternalName":
            t[f"{META}service_external_name"] = spec.get("externalName", "")
        else:
            t[f"{META}service_cluster_ip"] = spec.get("clusterIP", "")
        if kind == "LoadBalancer":
            ips = [i["ip"] for i in (svc["status"]["loadBalancer"].get("ingress") or [])
                   if i.get("ip")]
            t[f"{META}service_loadbalancer_ip"] = ",".join(ips) or spec.get("loadBalancerIP",
                                                                            "")
        targets.append(t)
    return TargetGroup(f"svc/{ns}/{name}", tuple(targets), labels)


def _pod_of(ref: dict | None, ctx: Context) -> dict | None:
    if not ref or ref.get("kind") != "Pod" or ctx.pods is None:
        return None
    return ctx.pods(f"{ref.get('namespace', '')}/{ref.get('name', '')}")


def _match_container_port(target: dict[str, str], pod: dict, port: int | None,
                          protocol: str | None) -> None:
    for c, init in _containers(pod):
        for cp in c.get("ports") or []:
            if port is None or cp.get("containerPort") != port:
                continue
            target.update({f"{META}pod_container_name": c.get("name", ""),
                           f"{META}pod_container_image": c.get("image", ""),
                           f"{META}pod_container_port_name": cp.get("name", ""),
                           f"{META}pod_container_port_number": str(port),
                           f"{META}pod_container_port_protocol":
                               cp.get("protocol", "") if protocol is None else protocol,
                           f"{META}pod_container_init": _bool(init)})
            return


def _unbound_pod_ports(seen: dict[str, tuple[dict, list[int | None]]],
                       ctx: Context) -> list[dict[str, str]]:
    """Targets for the container ports of backing pods that no endpoint port covers."""
    out = []
    for pod, ports in seen.values():
        ip = pod["status"].get("podIP", "")
        if not ip:
            continue
        for c, init in _containers(pod):
            for cp in c.get("ports") or []:
                number = cp.get("containerPort", 0)
                if number in ports:
                    continue
                out.append({"__address__": join_host_port(ip, number),
                            f"{META}pod_container_name": c.get("name", ""),
                            f"{META}pod_container_image": c.get("image", ""),
                            f"{META}pod_container_port_name": cp.get("name", ""),
                            f"{META}pod_container_port_number": str(number),
                            f"{META}pod_container_port_protocol": cp.get("protocol", ""),
                            f"{META}pod_container_init": _bool(init),
                            **pod_labels(pod, ctx)})
    return out


def build_endpoints(eps: dict, ctx: Context) -> TargetGroup:
    meta = eps["metadata"]
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    labels = {f"{META}namespace": ns}
    svc = ctx.services(f"{ns}/{name}") if ctx.services else None
    if svc is not None:
        labels.update(service_labels(svc))
    add_object_meta_labels(labels, meta, "endpoints")
    ctx.namespace_labels(labels, ns)
    targets: list[dict[str, str]] = []
    seen: dict[str, tuple[dict, list[int | None]]] = {}

    def add(addr: dict, port: dict, ready: str) -> None:
        number = port.get("port", 0)
        t = {"__address__": join_host_port(addr.get("ip", ""), number),
             f"{META}endpoint_port_name": port.get("name", ""),
             f"{META}endpoint_port_protocol": port.get("protocol", ""),
             f"{META}endpoint_ready": ready}
        ref = addr.get("targetRef")
        if ref:
            t[f"{META}endpoint_address_target_kind"] = ref.get("kind", "")
            t[f"{META}endpoint_address_target_name"] = ref.get("name", "")
        if addr.get("nodeName") is not None:
            t[f"{META}endpoint_node_name"] = addr["nodeName"]
        if addr.get("hostname"):
            t[f"{META}endpoint_hostname"] = addr["hostname"]
        if addr.get("nodeName") is not None:
            ctx.node_labels(t, addr["nodeName"])
        elif ref and ref.get("kind") == "Node":
            ctx.node_labels(t, ref.get("name"))
        pod = _pod_of(ref, ctx)
        if pod is not None:
            key = f"{pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}"
            seen.setdefault(key, (pod, []))[1].append(number)
            t.update(pod_labels(pod, ctx))
            _match_container_port(t, pod, number, port.get("protocol", ""))
        targets.append(t)

    for subset in eps.get("subsets") or []:
        for port in subset.get("ports") or []:
            for addr in subset.get("addresses") or []:
                add(addr, port, "true")
            for addr in subset.get("notReadyAddresses") or []:
                add(addr, port, "false")
    if (meta.get("labels") or {}).get("endpoints.kubernetes.io/over-capacity"):
        log.warning("kubernetes_sd: Endpoints %s/%s has over 1000 addresses and is truncated; "
                    "use role: endpointslice", ns, name)
    targets += _unbound_pod_ports(seen, ctx)
    return TargetGroup(f"endpoints/{ns}/{name}", tuple(targets), labels)


def _non_primary_family(svc: dict | None, eps: dict) -> bool:
    """Dual-stack services get one slice per family; Prometheus keeps the primary one."""
    if svc is None:
        return False
    spec = svc["spec"]
    if spec.get("ipFamilyPolicy") not in ("PreferDualStack", "RequireDualStack"):
        return False
    families = spec.get("ipFamilies") or []
    return bool(families) and eps.get("addressType") != families[0]


def build_endpointslice(eps: dict, ctx: Context) -> TargetGroup:
    meta = eps["metadata"]
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    source = f"endpointslice/{ns}/{name}"
    labels = {f"{META}namespace": ns,
              f"{META}endpointslice_address_type": eps.get("addressType") or ""}
    add_object_meta_labels(labels, meta, "endpointslice")
    svc_name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
    svc = ctx.services(f"{ns}/{svc_name}") if ctx.services and svc_name is not None else None
    if svc is not None:
        labels.update(service_labels(svc))
    ctx.namespace_labels(labels, ns)
    if _non_primary_family(svc, eps):
        return TargetGroup(source, (), labels)
    targets: list[dict[str, str]] = []
    seen: dict[str, tuple[dict, list[int | None]]] = {}

    def add(addr: str, ep: dict, port: dict) -> None:
        number = port.get("port")
        t = {"__address__": addr if number is None else join_host_port(addr, number)}
        S = f"{META}endpointslice_"
        for key, label in (("name", "port_name"), ("protocol", "port_protocol"),
                           ("appProtocol", "port_app_protocol")):
            if port.get(key) is not None:
                t[S + label] = port[key]
        if number is not None:
            t[S + "port"] = str(number)
        conditions = ep.get("conditions") or {}
        for key in ("ready", "serving", "terminating"):
            if conditions.get(key) is not None:
                t[f"{S}endpoint_conditions_{key}"] = _bool(conditions[key])
        if ep.get("hostname") is not None:
            t[S + "endpoint_hostname"] = ep["hostname"]
        ref = ep.get("targetRef")
        if ref:
            t[S + "address_target_kind"] = ref.get("kind", "")
            t[S + "address_target_name"] = ref.get("name", "")
        if ep.get("nodeName") is not None:
            t[S + "endpoint_node_name"] = ep["nodeName"]
        if ep.get("zone") is not None:
            t[S + "endpoint_zone"] = ep["zone"]
        for k, v in (ep.get("deprecatedTopology") or {}).items():
            t[f"{S}endpoint_topology_{sanitize(k)}"] = v
            t[f"{S}endpoint_topology_present_{sanitize(k)}"] = "true"
        ctx.node_labels(t, ref.get("name") if ref and ref.get("kind") == "Node"
                        else ep.get("nodeName"))
        pod = _pod_of(ref, ctx)
        if pod is not None:
            key = f"{pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}"
            seen.setdefault(key, (pod, []))[1].append(number)
            t.update(pod_labels(pod, ctx))
            _match_container_port(t, pod, number, None)
        targets.append(t)

    for ep in eps.get("endpoints") or []:
        for port in eps.get("ports") or []:
            for addr in ep.get("addresses") or []:
                add(addr, ep, port)
    targets += _unbound_pod_ports(seen, ctx)
    return TargetGroup(source, tuple(targets), labels)


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    pat, parts = pattern.split("."), host.split(".")
    return pat[0] == "*" and len(pat) == len(parts) and pat[1:] == parts[1:]


def build_ingress(ing: dict, ctx: Context) -> TargetGroup:
    meta, spec = ing["metadata"], ing["spec"]
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    labels = {f"{META}namespace": ns}
    if spec.get("ingressClassName") is not None:
        labels[f"{META}ingress_class_name"] = spec["ingressClassName"]
    add_object_meta_labels(labels, meta, "ingress")
    ctx.namespace_labels(labels, ns)
    tls_hosts = [h for t in spec.get("tls") or [] for h in t.get("hosts") or []]
    targets = []
    for rule in spec.get("rules") or []:
        host = rule.get("host", "")
        http = rule.get("http")
        paths = ["/"] if http is None else [p.get("path") or "/" for p in http.get("paths") or []]
        scheme = "https" if any(_host_matches(p, host) for p in tls_hosts) else "http"
        for path in paths:
            targets.append({"__address__": host, f"{META}ingress_scheme": scheme,
                            f"{META}ingress_host": host, f"{META}ingress_path": path})
    return TargetGroup(f"ingress/{ns}/{name}", tuple(targets), labels)


# ---- the discoverer --------------------------------------------------------------------------

_PRIMARY = {"node": (R.NODES, slim_node, build_node, "node/"),
            "pod": (R.PODS, slim_pod, build_pod, "pod/"),
            "service": (R.SERVICES, slim_service, build_service, "svc/"),
            "endpoints": (R.ENDPOINTS, slim_endpoints, build_endpoints, "endpoints/"),
            "endpointslice": (R.ENDPOINTSLICES, slim_endpointslice, build_endpointslice,
                              "endpointslice/"),
            "ingress": (R.INGRESSES, slim_ingress, build_ingress, "ingress/")}


def _refs(role: str, obj: dict) -> set[str]:
    """What a primary object's group depends on, as "kind:key" strings: a change to any of
    these rebuilds the group."""
    meta = obj["metadata"]
    ns = meta.get("namespace", "")
    out = {f"ns:{ns}"}
    if role == "pod":
        out.add(f"node:{obj['spec'].get('nodeName', '')}")
        if ctrl := controller_of(meta):
            out.add(f"owner:{ns}/{ctrl.get('name', '')}")
    elif role == "endpoints":
        out.add(f"svc:{ns}/{meta.get('name', '')}")
        for subset in obj.get("subsets") or []:
            for addr in (subset.get("addresses") or []) + (subset.get("notReadyAddresses") or []):
                _ref_of(out, addr.get("targetRef"), addr.get("nodeName"))
    elif role == "endpointslice":
        if (svc := (meta.get("labels") or {}).get("kubernetes.io/service-name")) is not None:
            out.add(f"svc:{ns}/{svc}")
        for ep in obj.get("endpoints") or []:
            _ref_of(out, ep.get("targetRef"), ep.get("nodeName"))
    return out


def _ref_of(out: set[str], ref: dict | None, node_name: str | None) -> None:
    if node_name:
        out.add(f"node:{node_name}")
    if ref and ref.get("kind") == "Pod":
        out.add(f"pod:{ref.get('namespace', '')}/{ref.get('name', '')}")
    elif ref and ref.get("kind") == "Node":
        out.add(f"node:{ref.get('name', '')}")


class _Store:
    """The informers of one kind (one per namespace, or one for all) read as one store."""

    def __init__(self, informers: list[Informer]) -> None:
        self.informers = informers

    def get(self, key: str) -> dict | None:
        for inf in self.informers:
            if (obj := inf.items.get(key)) is not None:
                return obj
        return None

    def keys(self) -> Iterable[str]:
        for inf in self.informers:
            yield from inf.items


class KubernetesDiscoverer:
    """One `kubernetes_sd_configs` entry: runs its informers and sends target groups."""

    def __init__(self, config: KubernetesSDConfig, job_name: str = "", *,
                 client: KubeClient | None = None,
                 service_account_dir: str = SERVICE_ACCOUNT_DIR) -> None:
        self.config = config
        self.job_name = job_name
        self._client = client
        self._sa_dir = service_account_dir
        self._role = config.role
        self._selectors = {s.role: s for s in config.selectors}
        self._index: dict[str, set[str]] = {}  # ref -> primary keys
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._stores: dict[str, _Store] = {}
        self._informers: list[Informer] = []

    # ---- connection ----

    async def _connect(self) -> tuple[KubeClient, HTTPClient | None]:
        cfg = self.config
        if cfg.kubeconfig_file:
            return await KubeClient.create("kubeConfig", kubeconfig=cfg.kubeconfig_file), None
        if not cfg.api_server:
            return await KubeClient.create("serviceAccount",
                                           service_account_dir=self._sa_dir), None
        url = cfg.api_server if "://" in cfg.api_server else f"https://{cfg.api_server}"
        try:
            http = HTTPClient(cfg)
        except (OSError, ValueError) as exc:
            raise KubeError(f"kubernetes_sd_configs: TLS settings for {url}: {exc}") from exc
        client = KubeClient(url, ssl_context=http.ssl if url.startswith("https") else None,
                            auth_headers=http.headers, proxy=cfg.proxy_url or None,
                            server_hostname=cfg.tls_config.server_name or None)
        return client, http

    async def _prepare(self) -> tuple[KubeClient, HTTPClient | None, list[str | None]]:
        """Connect and resolve the namespaces, retrying: a service account token or kubeconfig
        can appear after start-up (a slow volume mount), and other jobs keep scraping."""
        delay, last = _informer.BACKOFF_INITIAL, ""
        while True:
            try:
                namespaces = self._namespaces()
                if self._client is not None:
                    return self._client, None, namespaces
                return (*await self._connect(), namespaces)
            except KubeError as exc:
                if str(exc) != last:
                    log.error("kubernetes_sd job %s: %s (retrying)", self.job_name, exc)
                    last = str(exc)
            await asyncio.sleep(delay)
            delay = min(_informer.BACKOFF_CAP, delay * 2)

    def _namespaces(self) -> list[str | None]:
        names = list(self.config.namespaces.names)
        if self.config.namespaces.own_namespace:
            names.append(_own_namespace(self._sa_dir))
        return names or [None]

    # ---- informers ----

    def _informer(self, client: KubeClient, resource: R.Resource, slim: Callable,
                  namespace: str | None, selector_role: str | None, handler: Callable) -> Informer:
        sel = self._selectors.get(selector_role) if selector_role else None
        inf: Informer = Informer(
            client, resource, namespace=namespace, label_selector=sel.label if sel else "",
            field_selector=sel.field if sel else "", transform=slim,
            on_add=lambda k, v: handler(k, None, v),
            on_update=lambda k, old, new: handler(k, old, new),
            on_delete=lambda k, v: handler(k, v, None),
            name=f"kubernetes_sd {self.job_name} {resource}{'/' + namespace if namespace else ''}")
        self._informers.append(inf)
        return inf

    def _build_informers(self, client: KubeClient, namespaces: list[str | None]) -> None:
        role, attach = self._role, self.config.attach_metadata
        resource, slim, _, _ = _PRIMARY[role]
        kinds: list[tuple[str, R.Resource, Callable, bool, str | None]] = [
            ("primary", resource, slim, resource.namespaced, role)]
        related = role in ("endpoints", "endpointslice")
        if related:
            kinds += [("svc", R.SERVICES, slim_service, True, "service"),
                      ("pod", R.PODS, slim_pod, True, "pod")]
        if (attach.node and role in ("pod", "endpoints", "endpointslice")):
            kinds.append(("node", R.NODES, slim_node, False, "node"))
        if attach.namespace and role != "node":
            kinds.append(("ns", R.NAMESPACES, slim_meta_only, False, None))
        if attach.deployment and role in ("pod", "endpoints", "endpointslice"):
            kinds.append(("owner", R.REPLICASETS, slim_meta_only, True, None))
        if (attach.job or attach.cronjob) and role in ("pod", "endpoints", "endpointslice"):
            kinds.append(("owner-job", R.JOBS, slim_meta_only, True, None))
        for name, res, transform, namespaced, sel_role in kinds:
            handler = (self._on_primary if name == "primary"
                       else lambda k, old, new, n=name: self._on_related(n, k, old, new))
            scopes = namespaces if namespaced else [None]
            self._stores[name] = _Store([self._informer(client, res, transform, ns, sel_role,
                                                        handler) for ns in scopes])

    def _context(self) -> Context:
        def lookup(name: str) -> Lookup | None:
            store = self._stores.get(name)
            return store.get if store else None
        return Context(nodes=lookup("node"), namespaces=lookup("ns"), pods=lookup("pod"),
                       services=lookup("svc"), replicasets=lookup("owner"),
                       jobs=lookup("owner-job"), attach=self.config.attach_metadata)

    # ---- change tracking ----

    def _on_primary(self, key: str, old: dict | None, new: dict | None) -> None:
        if old is not None:
            for ref in _refs(self._role, old):
                keys = self._index.get(ref)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._index[ref]
        if new is not None:
            for ref in _refs(self._role, new):
                self._index.setdefault(ref, set()).add(key)
        self._mark([key])

    def _on_related(self, kind: str, key: str, old: dict | None, new: dict | None) -> None:
        if kind == "primary":
            return
        if kind in ("owner", "owner-job"):
            # A ReplicaSet or Job: its pods (the primary objects, or pods behind endpoints).
            if self._role == "pod":
                self._mark(self._index.get(f"owner:{key}", ()))
            else:
                pods = self._stores["pod"]
                for pod_key in list(pods.keys()):
                    pod = pods.get(pod_key)
                    ctrl = controller_of(pod["metadata"]) if pod else None
                    ns = pod_key.split("/", 1)[0]
                    if ctrl and f"{ns}/{ctrl.get('name')}" == key:
                        self._mark(self._index.get(f"pod:{pod_key}", ()))
            return
        self._mark(self._index.get(f"{kind}:{key}", ()))

    def _mark(self, keys: Iterable[str]) -> None:
        before = len(self._dirty)
        self._dirty.update(keys)
        if len(self._dirty) != before:
            self._wake.set()

    def _group(self, key: str, ctx: Context) -> TargetGroup | None:
        _, _, build, prefix = _PRIMARY[self._role]
        obj = self._stores["primary"].get(key)
        if obj is None:
            return TargetGroup(prefix + key, ())
        return build(obj, ctx)

    # ---- run ----

    async def run(self, send: Callable[[list[TargetGroup]], None]) -> None:
        self._index, self._dirty, self._stores, self._informers = {}, set(), {}, []
        client, http, namespaces = await self._prepare()
        try:
            self._build_informers(client, namespaces)
            for inf in self._informers:
                await inf.start()
            await self._wait_synced()
            ctx = self._context()
            self._dirty.clear()
            self._wake.clear()
            groups = [g for key in list(self._stores["primary"].keys())
                      if (g := self._group(key, ctx)) is not None]
            send(groups)
            while True:
                await self._wake.wait()
                self._wake.clear()
                keys, self._dirty = self._dirty, set()
                groups = [g for key in sorted(keys) if (g := self._group(key, ctx)) is not None]
                if groups:
                    send(groups)
        finally:
            for inf in self._informers:
                await inf.stop()
            self._informers.clear()
            if self._client is None:
                await client.close()
            if http is not None:
                await http.close()

    async def _wait_synced(self) -> None:
        """Block until every informer listed once (Prometheus's WaitForCacheSync), saying every
        half minute what it still waits for and why."""
        synced = asyncio.gather(*(inf.wait_synced() for inf in self._informers))
        try:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(synced), 30)
                    return
                except asyncio.TimeoutError:
                    pending = [f"{inf.name}: {inf.last_error or 'listing'}"
                               for inf in self._informers if not inf.synced]
                    log.warning("kubernetes_sd job %s: no targets until listed: %s",
                                self.job_name, "; ".join(pending))
        finally:
            synced.cancel()


def _own_namespace(sa_dir: str) -> str:
    path = os.path.join(sa_dir, "namespace")
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as exc:
        raise KubeError(f"namespaces.own_namespace: could not determine the pod's namespace "
                        f"from {path}: {exc}") from exc
    if not value:
        raise KubeError(f"namespaces.own_namespace: {path} is empty")
    return value
