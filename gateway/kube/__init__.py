"""Shared Kubernetes API access for the gateway's components: one client per configuration
(`KubeClient`), informers (`Informer`: a list + watch cache with callbacks) and the resources
they read (`gateway.kube.resources`). See client.py for why raw JSON over aiohttp."""

from gateway.kube.client import KubeClient, KubeError, KubeForbidden, KubeGone
from gateway.kube.informer import Informer, object_key
from gateway.kube.resources import Resource

__all__ = ["Informer", "KubeClient", "KubeError", "KubeForbidden", "KubeGone", "Resource",
           "object_key"]
