"""The Kubernetes API resources the gateway reads, and their URL paths."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    group: str
    """API group; "" for the core API (served under /api)."""
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None) -> str:
        """/api/v1/pods, /api/v1/namespaces/ns/pods, /apis/apps/v1/replicasets, ..."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


PODS = Resource("", "v1", "pods")
NODES = Resource("", "v1", "nodes", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
SERVICES = Resource("", "v1", "services")
ENDPOINTS = Resource("", "v1", "endpoints")
EVENTS = Resource("", "v1", "events")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices")
REPLICASETS = Resource("apps", "v1", "replicasets")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
STATEFULSETS = Resource("apps", "v1", "statefulsets")
DAEMONSETS = Resource("apps", "v1", "daemonsets")
JOBS = Resource("batch", "v1", "jobs")
CRONJOBS = Resource("batch", "v1", "cronjobs")
EVENTS_V1 = Resource("events.k8s.io", "v1", "events")
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses")

ALL = (PODS, NODES, NAMESPACES, SERVICES, ENDPOINTS, EVENTS, ENDPOINTSLICES, REPLICASETS,
       DEPLOYMENTS, STATEFULSETS, DAEMONSETS, JOBS, CRONJOBS, EVENTS_V1, INGRESSES)
