"""The Kubernetes side of the processor: informers feeding the pod table and the object caches.

One Watcher serves every pipeline's instance of a `k8sattributes/<name>` with the same config
(the Collector makes one per pipeline; the cluster does not need to be watched three times).
Pods are watched always; ReplicaSets, Namespaces, Nodes and workloads only when a rule reads
them. Each informer keeps only the slim records of objects.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gateway.errors import GatewayError
from gateway.kube import resources as kr
from gateway.kube.client import KubeClient, KubeError
from gateway.kube.informer import Informer
from gateway.telemetry import SelfTelemetry
from processors.k8sattributes.metrics import WatchMetrics
from processors.k8sattributes import association
from processors.k8sattributes.config import K8sAttributesConfig
from processors.k8sattributes.objects import Meta, Pod, Transforms
from processors.k8sattributes.podtable import PodTable
from processors.k8sattributes.rules import Rules, cronjob_from_job, deployment_from_replicaset

log = logging.getLogger(__name__)

EXPIRE_INTERVAL = 30.0  # how often deleted pods past their grace period are dropped (upstream)
_OWNER_KINDS = ("ReplicaSet", "StatefulSet", "DaemonSet")


def label_selector(cfg: K8sAttributesConfig) -> str:
    parts = []
    for f in cfg.filter.labels:
        parts.append({"equals": f"{f.key}={f.value}", "not-equals": f"{f.key}!={f.value}",
                      "exists": f.key, "does-not-exist": f"!{f.key}"}[f.op])
    return ",".join(parts)


def _escape(value: str) -> str:
    # backslash, "," and "=" are escaped in a field selector value (fields.EscapeValue)
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def field_selector(cfg: K8sAttributesConfig) -> str:
    parts = [f"{f.key}{'!=' if f.op == 'not-equals' else '='}{_escape(f.value)}"
             for f in cfg.filter.fields]
    node = cfg.filter.node_name()
    if node:
        parts.append(f"spec.nodeName={_escape(node)}")
    return ",".join(parts)


class Watcher:
    def __init__(self, cfg: K8sAttributesConfig, name: str,
                 telemetry: SelfTelemetry | None = None) -> None:
        self.cfg = cfg
        self.name = name
        self.rules = Rules.from_config(cfg)
        self.associations = association.compile_rules(cfg.pod_association)
        self.transforms = Transforms(self.rules)
        self.table = PodTable()
        self.metrics = WatchMetrics(telemetry, name)
        self.namespaces: dict[str, Meta] = {}
        self.nodes: dict[str, Meta] = {}
        self.replicasets: dict[str, Meta] = {}  # by uid, as the other workload caches
        self.workloads: dict[str, dict[str, Meta]] = {
            "deployment": {}, "statefulset": {}, "daemonset": {}, "job": {}}
        self.generation = 0  # bumped when a cache pods' resolved attributes depend on changes
        self.client: KubeClient | None = None
        self.informers: list[Informer[Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started: asyncio.Task[None] | None = None
        self.expire_interval = EXPIRE_INTERVAL
        self.handlers = self._handlers()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and start the informers (once, however many processors share this)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        cfg = self.cfg
        try:
            self.client = await KubeClient.create(cfg.auth_type, context=cfg.context or None)
        except (KubeError, OSError, ValueError) as exc:
            raise GatewayError(f"processors::{self.name}: cannot reach the Kubernetes API "
                               f"(auth_type {cfg.auth_type}): {exc}") from exc
        self.informers = self._informers(self.client)
        for informer in self.informers:
            await informer.start()
        self._tasks = [asyncio.ensure_future(self._expire_loop()),
                       asyncio.ensure_future(self._report_errors())]
        log.info("processors::%s: watching %s (pods: label selector %r, field selector %r)",
                 self.name, ", ".join(i.resource.plural for i in self.informers),
                 label_selector(cfg), field_selector(cfg))

    def _sources(self) -> list[tuple[kr.Resource, dict[str, Any]]]:
        """What to watch, and how: only what the rules read; pods last, so that the caches
        pods are resolved through fill first."""
        cfg, rules = self.cfg, self.rules
        ns = cfg.filter.namespace or None
        out: list[tuple[kr.Resource, dict[str, Any]]] = []
        if rules.needs_replicasets:
            out.append((kr.REPLICASETS, {"namespace": ns}))
        if rules.needs_namespaces:
            only_kube_system = not rules.extracts_from("namespace")  # for k8s.cluster.uid
            out.append((kr.NAMESPACES, {
                "field_selector": "metadata.name=kube-system" if only_kube_system else ""}))
        if rules.needs_nodes:
            node = cfg.filter.node_name()
            out.append((kr.NODES, {"field_selector": f"metadata.name={node}" if node else ""}))
        for kind, resource in (("deployment", kr.DEPLOYMENTS), ("statefulset", kr.STATEFULSETS),
                               ("daemonset", kr.DAEMONSETS)):
            if rules.extracts_from(kind):
                out.append((resource, {"namespace": ns}))
        if rules.needs_jobs:
            out.append((kr.JOBS, {"namespace": ns}))
        out.append((kr.PODS, {"namespace": ns, "label_selector": label_selector(cfg),
                              "field_selector": field_selector(cfg)}))
        return out

    def _handlers(self) -> dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[..., None],
                                           Callable[..., None], Callable[..., None]]]:
        """plural → (transform, on_add, on_update, on_delete)."""
        t = self.transforms
        out: dict[str, Any] = {
            "pods": (t.pod, self._pod_added, self._pod_updated, self._pod_deleted),
            "replicasets": (t.replicaset, *self._meta_handlers("replicaset", self.replicasets,
                                                               "uid")),
            "namespaces": (t.namespace, *self._meta_handlers("namespace", self.namespaces,
                                                             "name")),
            "nodes": (t.node, *self._meta_handlers("node", self.nodes, "name")),
            "jobs": (t.job, *self._meta_handlers("job", self.workloads["job"], "uid")),
        }
        for kind in ("deployment", "statefulset", "daemonset"):
            out[f"{kind}s"] = (lambda o, k=kind: t.meta(k, o),
                               *self._meta_handlers(kind, self.workloads[kind], "uid"))
        return out

    def _informers(self, client: KubeClient) -> list[Informer[Any]]:
        out: list[Informer[Any]] = []
        for resource, kw in self._sources():
            transform, on_add, on_update, on_delete = self.handlers[resource.plural]
            out.append(Informer(client, resource, transform=transform, on_add=on_add,
                                on_update=on_update, on_delete=on_delete,
                                name=f"processors::{self.name}: {resource.plural}", **kw))
        return out

    def load(self, plural: str, objects: list[dict[str, Any]]) -> None:
        """Feed objects as an informer's list would (tests, and tools replaying captures)."""
        transform, on_add, _, _ = self.handlers[plural]
        for obj in objects:
            value = transform(obj)
            if value is not None:
                on_add("", value)

    async def wait_synced(self, timeout: float) -> None:
        """Raise a GatewayError naming what did not sync (and why) within `timeout`."""
        results = await asyncio.gather(*(i.wait_synced(timeout) for i in self.informers))
        missing = [i for i, ok in zip(self.informers, results) if not ok]
        if missing:
            why = "; ".join(f"{i.resource.plural}: {i.last_error or 'not synced yet'}"
                            for i in missing)
            raise GatewayError(f"processors::{self.name}: failed to wait for caches to sync "
                               f"within {timeout:g}s: {why}")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for informer in self.informers:
            await informer.stop()
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self._started is not None and not self._started.done():
            self._started.cancel()

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.expire_interval)
            if self.table.expire():
                self.metrics.table_size(len(self.table))

    async def _report_errors(self) -> None:
        """Say once, loudly, why an informer cannot list or watch (RBAC, network); the informer
        keeps retrying, and syncing later is logged too."""
        reported: dict[str, str | None] = {}
        while True:
            for informer in self.informers:
                error = informer.last_error if not informer.synced else None
                if error != reported.get(informer.name, None):
                    if error:
                        log.error("%s: %s; until this is fixed, data passes without the metadata "
                                  "it would add", informer.name, error)
                    elif informer.name in reported:
                        log.info("%s: synced", informer.name)
                    reported[informer.name] = error
            await asyncio.sleep(1.0)

    # -- pods -------------------------------------------------------------------------------
    def identifiers(self, pod: Pod) -> list[association.Identifier]:
        return association.for_pod(pod, self.associations,
                                    lambda p, name: self.resolve(p).get(name, ""))

    def _pod_added(self, _key: str, pod: Pod) -> None:
        self.metrics.event("pod", "added")
        self.table.put(pod, self.identifiers(pod))
        self.metrics.table_size(len(self.table))

    def _pod_updated(self, _key: str, old: Pod, new: Pod) -> None:
        self.metrics.event("pod", "updated")
        new_ids = self.identifiers(new)
        old_ids = self.identifiers(old)
        if old.uid != new.uid:  # same name, new pod (a StatefulSet replica re-created)
            self.table.remove(old, old_ids)
        else:
            keep = set(new_ids)
            self.table.remove(old, [i for i in old_ids if i not in keep])  # e.g. IP changed
        self.table.put(new, new_ids)
        self.metrics.table_size(len(self.table))

    def _pod_deleted(self, _key: str, pod: Pod) -> None:
        self.metrics.event("pod", "deleted")
        self.table.remove(pod, self.identifiers(pod))

    def pod(self, identifier: association.Identifier) -> Pod | None:
        pod = self.table.get(identifier)
        if pod is None or pod.ignore:
            if pod is None:
                self.metrics.lookup_miss()
            return None
        return pod

    # -- other objects ----------------------------------------------------------------------
    def _meta_handlers(self, obj: str, cache: dict[str, Meta], by: str) -> tuple[
            Callable[..., None], Callable[..., None], Callable[..., None]]:
        def key(meta: Meta) -> str:
            return meta.uid if by == "uid" else meta.name

        def added(_key: str, meta: Meta) -> None:
            self.metrics.event(obj, "added")
            cache[key(meta)] = meta
            self.generation += 1

        def updated(_key: str, old: Meta, new: Meta) -> None:
            self.metrics.event(obj, "updated")
            if key(old) != key(new):
                cache.pop(key(old), None)
            cache[key(new)] = new
            self.generation += 1

        def deleted(_key: str, meta: Meta) -> None:
            self.metrics.event(obj, "deleted")
            if cache.get(key(meta)) is meta or by == "name":
                cache.pop(key(meta), None)
            self.generation += 1

        return added, updated, deleted

    def resolve(self, pod: Pod) -> dict[str, str]:
        """The pod's attributes including those read through other caches (its Deployment via
        its ReplicaSet, its CronJob's uid, the cluster uid): resolved when used, so a
        ReplicaSet seen after its pods still names their Deployment."""
        if pod.resolved is not None and pod.resolved_gen == self.generation:
            return pod.resolved
        has = self.rules.metadata.__contains__
        attrs = dict(pod.attributes)
        deployment = self.deployment_of(pod)
        if deployment is not None:
            if has("k8s.deployment.name") and deployment[0]:
                attrs.setdefault("k8s.deployment.name", deployment[0])
            if has("k8s.deployment.uid") and deployment[1]:
                attrs.setdefault("k8s.deployment.uid", deployment[1])
        job = pod.owner("Job")
        if job is not None and has("k8s.cronjob.uid"):
            meta = self.workloads["job"].get(job[1])
            if meta is not None and meta.controller[1]:
                attrs.setdefault("k8s.cronjob.uid", meta.controller[1])
        if has("k8s.cluster.uid"):
            kube_system = self.namespaces.get("kube-system")
            if kube_system is not None and kube_system.uid:
                attrs.setdefault("k8s.cluster.uid", kube_system.uid)
        if has("service.name"):
            attrs.setdefault("service.name", self._service_name(pod, deployment))
        if has("service.version") and pod.app_labels[2]:
            attrs.setdefault("service.version", pod.app_labels[2])
        pod.resolved, pod.resolved_gen = attrs, self.generation
        return attrs

    def deployment_of(self, pod: Pod) -> tuple[str, str] | None:
        """(name, uid) of the Deployment owning the pod's ReplicaSet, if known."""
        rs = pod.owner("ReplicaSet")
        if rs is None:
            return None
        meta = self.replicasets.get(rs[1])
        if meta is not None and meta.controller[0]:
            return meta.controller
        if self.rules.deployment_name_from_replicaset:
            name = deployment_from_replicaset(rs[0])
            return (name, "") if name else None
        return None

    def _service_name(self, pod: Pod, deployment: tuple[str, str] | None) -> str:
        # semantic conventions: app.kubernetes.io/instance, then app.kubernetes.io/name, then
        # the owning workload (Deployment over ReplicaSet, CronJob over Job), then the pod name
        name_label, instance_label, _ = pod.app_labels
        if instance_label or name_label:
            return instance_label or name_label
        if deployment is not None and deployment[0]:
            return deployment[0]
        for kind, owner, _uid in pod.owners:
            if kind == "Job":
                return cronjob_from_job(owner) or owner
            if kind in _OWNER_KINDS:
                return owner
        return pod.name

    def workload_uid(self, pod: Pod, kind: str) -> str:
        owner = pod.owner(kind)
        return owner[1] if owner is not None else ""
