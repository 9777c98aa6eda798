"""The Collector's k8sconfig.APIConfig: how a component reaches the Kubernetes API server.
Shared by every component that talks to it (k8sattributes, k8s_events)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.config.types import ComponentConfig


class KubeAPIConfig(ComponentConfig):
    auth_type: Literal["none", "serviceAccount", "kubeConfig", "tls"] = Field(
        "serviceAccount", description="How to reach the API server: serviceAccount (in-cluster "
        "token), kubeConfig (KUBECONFIG / ~/.kube/config), none, tls.")
    context: str = Field("", description="kubeconfig context to use (auth_type kubeConfig).")
    kube_api_qps: float = Field(0, ge=0, description="Accepted for compatibility (client-side "
                                "rate limit; a watch makes few requests).")
    kube_api_burst: int = Field(0, ge=0, description="Accepted for compatibility.")
