"""`receivers.k8s_events` configuration: the Collector's k8seventsreceiver options (its
k8sconfig.APIConfig and `namespaces`), plus where the delivery checkpoint lives."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from gateway.kube.config import KubeAPIConfig

DEFAULT_DIRECTORY = "./data/k8s_events"

# A namespace name is a DNS label (RFC 1123): what the API server would refuse, said at start-up.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class K8sEventsConfig(KubeAPIConfig):
    namespaces: list[str] = Field(default_factory=list, description="Namespaces whose events "
                                  "are collected (one watch each); empty: every namespace.")
    storage: str = Field("", description="otelgw: id of a storage extension (`file_storage` or "
                         "`file_storage/<name>`, listed in service::extensions) in whose "
                         "directory (subdirectory `receiver_<type>[_<name>]`) the delivery "
                         "checkpoint is kept.")
    directory: str = Field("", description="otelgw: directory of the delivery checkpoint when "
                           f"`storage` is empty (default {DEFAULT_DIRECTORY}, relative to the "
                           "working directory); the file is `<receiver id>.json`. It records "
                           "which (uid, resourceVersion) of each event the pipeline took, so "
                           "a restart or relist does not send an event twice. Keep it on a "
                           "volume that outlives the pod.")

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _DNS_LABEL.match(name):
                raise ValueError(f"namespace {name!r} is not a valid namespace name (a DNS "
                                 "label: lower-case letters, digits and '-', at most 63)")
        if len(set(value)) != len(value):
            raise ValueError("a namespace is listed twice")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> K8sEventsConfig:
        if self.storage and self.directory:
            raise ValueError("set either storage (a storage extension) or directory, not both")
        return self
