"""`kubernetes_sd_configs`: targets from the Kubernetes API, with Prometheus's __meta_kubernetes_*
labels, for the roles node, pod, service, endpoints and endpointslice."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from receivers.prometheus.httpconfig import HTTPClientConfig, PromConfig

Role = Literal["node", "pod", "service", "endpoints", "endpointslice", "ingress"]


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
