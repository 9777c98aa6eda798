"""The k8sattributes processor: per Resource, find the pod the data came from and add its metadata.

One dict lookup per ResourceSpans/ResourceMetrics/ResourceLogs; spans, points and records are
never touched. The payload is re-serialized only when an attribute was actually added.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from gateway.component import ComponentID, Consumer, Host
from gateway.payload import Payload
from gateway.signals import Signal, resources
from processors.k8sattributes import association
from processors.k8sattributes.attrs import ResourceView, encode, write
from processors.k8sattributes.config import K8sAttributesConfig
from processors.k8sattributes.objects import Container, Pod
from processors.k8sattributes.watcher import Watcher

log = logging.getLogger(__name__)

# Attributes a resource may carry that change what is looked up (not only what is kept).
_FALLBACK_KEYS = frozenset(("k8s.namespace.name", "k8s.node.name", "k8s.deployment.uid",
                            "k8s.statefulset.uid", "k8s.daemonset.uid", "k8s.job.uid"))
_CONTAINER_KEYS = ("k8s.container.name", "container.id")
_TEMPLATES = 4096  # cached per-pod additions per processor; cleared when full


def _connection_ip(ident: association.Identifier) -> str:
    for source, _name, value in ident:
        if source == association.CONNECTION:
            return value
    return ""


# Watchers shared by the instances of one processor id (one per pipeline) with the same config.
_SHARED: dict[tuple[str, str], tuple[Watcher, int]] = {}


def _acquire(cid: ComponentID, cfg: K8sAttributesConfig, host: Host | None) -> Watcher:
    key = (str(cid), json.dumps(cfg.model_dump(mode="json", by_alias=True), sort_keys=True))
    watcher, refs = _SHARED.get(key, (None, 0))
    if watcher is None:
        watcher = Watcher(cfg, str(cid), host.telemetry if host is not None else None)
    _SHARED[key] = (watcher, refs + 1)
    return watcher


async def _release(watcher: Watcher) -> None:
    for key, (w, refs) in list(_SHARED.items()):
        if w is watcher:
            if refs > 1:
                _SHARED[key] = (w, refs - 1)
                return
            del _SHARED[key]
            await watcher.stop()
            return


class K8sAttributesProcessor:
    def __init__(self, cid: ComponentID, cfg: K8sAttributesConfig, signal: Signal,
                 nxt: Consumer) -> None:
        self.id = cid
        self.cfg = cfg
        self.signal = signal
        self.next = nxt
        self.rules = association.compile_rules(cfg.pod_association)
        self.add_pod_ip = cfg.passthrough or "k8s.pod.ip" in cfg.extract.metadata
        self.watcher: Watcher | None = None
        self._released = False
        self._templates: dict[tuple[Any, ...], tuple[Pod, int, frozenset[str], bytes]] = {}
        self._success: Any = None
        self._error: Any = None
        self._last_failure = -1e9

    async def start(self, host: Host) -> None:
        labels = {"processor": str(self.id), "k8s_telemetry_type": self.signal.value}
        self._success = host.telemetry.metric(
            Counter, "otelcol_processor_k8sattributes_pod_association_success",
            "Number of successful pod associations", list(labels)).labels(**labels)
        self._error = host.telemetry.metric(
            Counter, "otelcol_processor_k8sattributes_pod_association_error",
            "Number of failed pod associations", list(labels)).labels(**labels)
        if self.cfg.passthrough:
            return
        watcher = _acquire(self.id, self.cfg, host)
        self.watcher, self._released = watcher, False
        try:
            await watcher.start()
            if self.cfg.wait_for_metadata:
                await watcher.wait_synced(self.cfg.wait_for_metadata_timeout)
        except BaseException:
            self.watcher = None
            await _release(watcher)
            raise

    async def shutdown(self) -> None:
        """Stop watching. The pod table stays: the pipeline shuts processors down before the
        receivers have answered the requests in flight, and those are still enriched."""
        if self.watcher is not None and not self._released:
            self._released = True
            await _release(self.watcher)

    async def consume(self, payload: Payload) -> None:
        if self.watcher is not None or self.add_pod_ip:
            try:
                self._process(payload)
            except Exception:  # a bug here must not cost the data: it goes on unenriched
                now = time.monotonic()
                if now - self._last_failure > 60:
                    self._last_failure = now
                    log.exception("processors::%s: enrichment failed; passing data on as is",
                                  self.id)
        await self.next.consume(payload)

    def _process(self, payload: Payload) -> None:
        client_ip = payload.context.client_address
        watcher = self.watcher
        mutated = False
        found = missed = 0
        for rs in resources(self.signal, payload.message):
            resource = rs.resource
            view = ResourceView(resource)
            ident = association.from_resource(view, client_ip, self.rules)
            conn = _connection_ip(ident) if self.add_pod_ip else ""
            pod = watcher.pod(ident) if watcher is not None and ident else None
            if pod is None:
                missed += 1
            else:
                found += 1
            encoded = self._template(pod, view, conn) if pod is not None else None
            if encoded is None:  # no template applies: decide attribute by attribute
                additions = self._additions(view, pod, conn, view.filled)
                if additions and not mutated:
                    payload.mutable_message()  # the cached bytes no longer match
                    mutated = True
                if additions:
                    write(resource, view, additions)
            elif encoded:
                if not mutated:
                    payload.mutable_message()
                    mutated = True
                resource.MergeFromString(encoded)
        if self._success is not None and watcher is not None:
            if found:
                self._success.inc(found)
            if missed:
                self._error.inc(missed)

    def _template(self, pod: Pod, view: ResourceView, conn: str) -> bytes | None:
        """The encoded additions for a resource of `pod` that carries none of the keys they
        add (the usual case: data straight from an SDK), computed once per pod and container
        until a cache changes; None when the resource needs the attribute-by-attribute path."""
        watcher = self.watcher
        assert watcher is not None
        values = view.values
        if not values.keys().isdisjoint(_FALLBACK_KEYS):
            return None
        container = (view.string("k8s.container.name"), view.string("container.id"),
                     view.restart_count(), view.filled("k8s.container.name"),
                     view.filled("container.id")) if pod.containers or pod.container_ids else None
        key = (id(pod), container, conn)
        entry = self._templates.get(key)
        if entry is None or entry[0] is not pod or entry[1] != watcher.generation:
            # the container keys the data names are part of the cache key, so they may be
            # consulted; nothing else the data holds is
            additions = self._additions(view, pod, conn,
                                        lambda k: k in _CONTAINER_KEYS and view.filled(k))
            if len(self._templates) >= _TEMPLATES:
                self._templates.clear()
            entry = self._templates[key] = (pod, watcher.generation, frozenset(additions),
                                            encode(additions))
        return entry[3] if values.keys().isdisjoint(entry[2]) else None

    def _additions(self, view: ResourceView, pod: Pod | None, conn: str,
                   filled: Callable[[str], bool]) -> dict[str, Any]:
        """What to add to one resource, first source winning, as the Collector orders them:
        the pod's attributes, its container's, then namespace, node and workload metadata."""
        out: dict[str, Any] = {}

        def add(key: str, value: Any) -> None:
            if value and key not in out and not filled(key):
                out[key] = value

        if conn:
            add("k8s.pod.ip", conn)
        watcher = self.watcher
        if watcher is None:
            return out
        if pod is not None:
            for key, value in watcher.resolve(pod).items():
                add(key, value)
            if pod.containers or pod.container_ids:
                self._container(pod, view, add)
        namespace = pod.namespace if pod is not None else view.string("k8s.namespace.name")
        if namespace:
            meta = watcher.namespaces.get(namespace)
            if meta is not None:
                for key, value in meta.attributes.items():
                    add(key, value)
            if "service.namespace" in watcher.rules.metadata:
                add("service.namespace", namespace)
        node = (pod.node if pod is not None else "") or view.string("k8s.node.name")
        if node:
            meta = watcher.nodes.get(node)
            if meta is not None:
                for key, value in meta.attributes.items():
                    add(key, value)
                if "k8s.node.uid" in watcher.rules.metadata:
                    add("k8s.node.uid", meta.uid)
        self._workloads(watcher, pod, view, add)
        return out

    @staticmethod
    def _workloads(watcher: Watcher, pod: Pod | None, view: ResourceView, add: Any) -> None:
        for kind, owner_kind in (("deployment", ""), ("statefulset", "StatefulSet"),
                                 ("daemonset", "DaemonSet"), ("job", "Job")):
            cache = watcher.workloads[kind]
            if not cache:
                continue
            uid = ""
            if pod is not None:
                if kind == "deployment":
                    deployment = watcher.deployment_of(pod)
                    uid = deployment[1] if deployment is not None else ""
                else:
                    uid = watcher.workload_uid(pod, owner_kind)
            meta = cache.get(uid or view.string(f"k8s.{kind}.uid"))
            if meta is not None:
                for key, value in meta.attributes.items():
                    add(key, value)

    @staticmethod
    def _container(pod: Pod, view: ResourceView, add: Any) -> None:
        name, cid = view.string("k8s.container.name"), view.string("container.id")
        container: Container | None
        if name:
            container = pod.containers.get(name)
        elif cid:
            container = pod.container_ids.get(cid)
        elif len(pod.container_ids) == 1:  # one container: it must be the one
            container = next(iter(pod.container_ids.values()))
        elif len(pod.containers) == 1:
            container = next(iter(pod.containers.values()))
        else:
            container = None
        if container is None:
            return
        add("k8s.container.name", container.name)
        add("container.image.name", container.image_name)
        add("container.image.tag", container.image_tag)
        add("service.instance.id", container.service_instance_id)
        add("service.version", container.service_version)
        if not container.statuses:
            return
        # the instance named by k8s.container.restart_count, else the latest one
        run = view.restart_count()
        if run is None:
            run = max(container.statuses)
        status = container.statuses.get(run)
        if status is not None:
            add("container.id", status[0])
            if status[1]:
                add("container.image.repo_digests", [status[1]])
