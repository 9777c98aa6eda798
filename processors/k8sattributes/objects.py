"""Slim records of the Kubernetes objects the processor reads, made by the informers' transform.

A pod JSON object is tens of kilobytes (managedFields, spec, conditions); the pod table keeps
only what the configured rules need, and the attributes that depend on the pod alone are
computed once here rather than for every resource that matches the pod.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.k8sattributes.images import parse_image, repo_digest, service_version
from processors.k8sattributes.rules import Rules, cronjob_from_job, deployment_from_replicaset

IGNORE_ANNOTATION = "opentelemetry.io/k8s-processor/ignore"
_APP_NAME = "app.kubernetes.io/name"
_APP_INSTANCE = "app.kubernetes.io/instance"
_APP_VERSION = "app.kubernetes.io/version"


@dataclass(slots=True)
class Container:
    name: str = ""
    image_name: str = ""
    image_tag: str = ""
    service_version: str = ""
    service_instance_id: str = ""
    # restart count → (container id, image repo digest): the highest is the running instance.
    statuses: dict[int, tuple[str, str]] = field(default_factory=dict)


@dataclass(slots=True)
class Pod:
    uid: str
    name: str
    namespace: str
    node: str = ""
    ip: str = ""
    ips: tuple[str, ...] = ()
    host_network: bool = False
    start_time: str = ""  # status.startTime: which of two pods with one IP is the newer
    ignore: bool = False
    # (kind, name, uid) of the owners the rules care about
    owners: tuple[tuple[str, str, str], ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    app_labels: tuple[str, str, str] = ("", "", "")  # app.kubernetes.io/name, instance, version
    containers: dict[str, Container] = field(default_factory=dict)
    container_ids: dict[str, Container] = field(default_factory=dict)
    # attributes resolved through other caches (ReplicaSets, Jobs, kube-system), and the
    # generation of those caches they were resolved at
    resolved: dict[str, str] | None = field(default=None, compare=False)
    resolved_gen: int = field(default=-1, compare=False)

    def owner(self, kind: str) -> tuple[str, str] | None:
        for k, name, uid in self.owners:
            if k == kind:
                return name, uid
        return None


@dataclass(slots=True)
class Meta:
    """A namespace, node or workload: its uid and the attributes extracted from it."""

    name: str
    uid: str
    attributes: dict[str, str] = field(default_factory=dict)
    # a ReplicaSet's controlling Deployment / a Job's controlling CronJob: (name, uid)
    controller: tuple[str, str] = ("", "")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _controller(meta: dict[str, Any], kind: str) -> tuple[str, str]:
    for ref in meta.get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("kind") == kind and ref.get("controller") is True:
            return str(ref.get("name", "")), str(ref.get("uid", ""))
    return "", ""


class Transforms:
    """The informers' transform functions for one set of rules."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._pod_labels, self._pod_annotations = rules.rules_from("pod")

    # -- pods -----------------------------------------------------------------------------
    def pod(self, obj: dict[str, Any]) -> Pod | None:
        meta = _meta(obj)
        uid, name = str(meta.get("uid", "")), str(meta.get("name", ""))
        if not name:
            return None
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
        ip = str(status.get("podIP") or "")
        ips = tuple(dict.fromkeys(
            [ip] + [str(p.get("ip")) for p in status.get("podIPs") or ()
                    if isinstance(p, dict) and p.get("ip")])) if ip else ()
        pod = Pod(uid=uid, name=name, namespace=str(meta.get("namespace", "")),
                  node=str(spec.get("nodeName") or ""), ip=ip, ips=ips,
                  host_network=bool(spec.get("hostNetwork")),
                  start_time=str(status.get("startTime") or ""))
        annotations = _str_map(meta.get("annotations"))
        pod.ignore = self._ignored(name, annotations)
        if pod.ignore:
            return pod
        labels = _str_map(meta.get("labels"))
        if self.rules.needs_owners:
            pod.owners = tuple(
                (str(r.get("kind", "")), str(r.get("name", "")), str(r.get("uid", "")))
                for r in meta.get("ownerReferences") or () if isinstance(r, dict))
        if self.rules.has("service.name", "service.version"):
            pod.app_labels = (labels.get(_APP_NAME, ""), labels.get(_APP_INSTANCE, ""),
                              labels.get(_APP_VERSION, ""))
        pod.attributes = self._pod_attributes(pod, meta, spec, labels, annotations)
        if self.rules.needs_containers:
            self._containers(pod, spec, status)
        return pod

    def _ignored(self, name: str, annotations: dict[str, str]) -> bool:
        if annotations.get(IGNORE_ANNOTATION, "").strip().lower() == "true":
            return True
        return any(p.search(name) for p in self.rules.excludes)

    def _pod_attributes(self, pod: Pod, meta: dict[str, Any], spec: dict[str, Any],
                        labels: dict[str, str], annotations: dict[str, str]) -> dict[str, str]:
        has = self.rules.metadata.__contains__
        out: dict[str, str] = {}
        if has("k8s.pod.name"):
            out["k8s.pod.name"] = pod.name
        if has("k8s.pod.hostname"):
            out["k8s.pod.hostname"] = str(spec.get("hostname") or "")
        if has("k8s.pod.ip"):
            out["k8s.pod.ip"] = pod.ip
        if has("k8s.namespace.name"):
            out["k8s.namespace.name"] = pod.namespace
        if has("k8s.pod.start_time") and meta.get("creationTimestamp"):
            out["k8s.pod.start_time"] = str(meta["creationTimestamp"])
        if has("k8s.pod.uid"):
            out["k8s.pod.uid"] = pod.uid
        for kind, name, uid in pod.owners:
            self._owner_attributes(kind, name, uid, out)
        if has("k8s.node.name"):
            out["k8s.node.name"] = pod.node
        out = {k: v for k, v in out.items() if v}  # a pending pod has no node and no IP yet
        for rule in self._pod_labels:
            rule.extract(labels, out)
        for rule in self._pod_annotations:
            rule.extract(annotations, out)
        return out

    def _owner_attributes(self, kind: str, name: str, uid: str, out: dict[str, str]) -> None:
        has = self.rules.metadata.__contains__
        key = {"ReplicaSet": "replicaset", "DaemonSet": "daemonset",
               "StatefulSet": "statefulset", "Job": "job"}.get(kind)
        if key is None:
            return
        if has(f"k8s.{key}.uid"):
            out[f"k8s.{key}.uid"] = uid
        if has(f"k8s.{key}.name"):
            out[f"k8s.{key}.name"] = name
        if kind == "ReplicaSet" and self.rules.deployment_name_from_replicaset \
                and has("k8s.deployment.name"):
            out["k8s.deployment.name"] = deployment_from_replicaset(name)
        if kind == "Job" and has("k8s.cronjob.name"):
            out["k8s.cronjob.name"] = cronjob_from_job(name)

    def _containers(self, pod: Pod, spec: dict[str, Any], status: dict[str, Any]) -> None:
        has = self.rules.metadata.__contains__
        if self.rules.has("container.image.name", "container.image.tag", "service.version",
                          "service.instance.id"):
            for c in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
                if not isinstance(c, dict) or not c.get("name"):
                    continue
                info = pod.containers[str(c["name"])] = Container()
                image = str(c.get("image") or "")
                ref = parse_image(image)
                if ref is not None:
                    info.image_name = ref.name if has("container.image.name") else ""
                    info.image_tag = ref.tag if has("container.image.tag") else ""
                    if has("service.version"):
                        info.service_version = service_version(image)
        for st in [*(status.get("containerStatuses") or ()),
                   *(status.get("initContainerStatuses") or ())]:
            if not isinstance(st, dict) or not st.get("name"):
                continue
            name = str(st["name"])
            info = pod.containers.setdefault(name, Container())
            if has("k8s.container.name"):
                info.name = name
            if has("service.instance.id"):
                info.service_instance_id = f"{pod.namespace}.{pod.name}.{name}"
            cid = str(st.get("containerID") or "")
            cid = cid.split("://", 1)[1] if cid.count("://") == 1 else cid
            if cid:
                pod.container_ids[cid] = info
            if has("container.id") or has("container.image.repo_digests"):
                digest = repo_digest(str(st.get("imageID") or "")) \
                    if has("container.image.repo_digests") else ""
                restarts = st.get("restartCount")
                info.statuses[restarts if isinstance(restarts, int) else 0] = (
                    cid if has("container.id") else "", digest)

    # -- other objects --------------------------------------------------------------------
    def meta(self, source: str, obj: dict[str, Any], controller_kind: str = "") -> Meta | None:
        meta = _meta(obj)
        name = str(meta.get("name", ""))
        if not name:
            return None
        labels_rules, annotation_rules = self.rules.rules_from(source)
        out: dict[str, str] = {}
        if labels_rules:
            labels = _str_map(meta.get("labels"))
            for rule in labels_rules:
                rule.extract(labels, out)
        if annotation_rules:
            annotations = _str_map(meta.get("annotations"))
            for rule in annotation_rules:
                rule.extract(annotations, out)
        controller = _controller(meta, controller_kind) if controller_kind else ("", "")
        return Meta(name, str(meta.get("uid", "")), out, controller)

    def namespace(self, obj: dict[str, Any]) -> Meta | None:
        return self.meta("namespace", obj)

    def node(self, obj: dict[str, Any]) -> Meta | None:
        return self.meta("node", obj)

    def replicaset(self, obj: dict[str, Any]) -> Meta | None:
        # only the owning Deployment matters: a ReplicaSet's labels are never extracted
        meta = _meta(obj)
        name = str(meta.get("name", ""))
        return Meta(name, str(meta.get("uid", "")), {}, _controller(meta, "Deployment")) \
            if name else None

    def job(self, obj: dict[str, Any]) -> Meta | None:
        return self.meta("job", obj, "CronJob")
