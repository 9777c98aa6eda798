"""`processors.k8sattributes` configuration, with the Collector's names, defaults and checks."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway import goregex
from gateway.config.types import ComponentConfig, Duration
from gateway.kube.config import KubeAPIConfig
from gateway.kube.selectors import parse_label_selector

# What `extract.metadata` may name (the Collector's list; anything else is an error).
METADATA_FIELDS = (
    "k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.pod.hostname", "k8s.pod.start_time",
    "k8s.pod.ip", "k8s.deployment.name", "k8s.deployment.uid", "k8s.replicaset.name",
    "k8s.replicaset.uid", "k8s.daemonset.name", "k8s.daemonset.uid", "k8s.statefulset.name",
    "k8s.statefulset.uid", "k8s.job.name", "k8s.job.uid", "k8s.cronjob.name", "k8s.cronjob.uid",
    "k8s.node.name", "k8s.node.uid", "k8s.container.name", "container.id", "container.image.name",
    "container.image.tag", "container.image.repo_digests", "k8s.cluster.uid",
    "service.namespace", "service.name", "service.version", "service.instance.id",
)

# The attributes enabled by default in the Collector's metadata.yaml, in its order.
DEFAULT_METADATA = (
    "container.image.name", "container.image.tag", "k8s.deployment.name", "k8s.namespace.name",
    "k8s.node.name", "k8s.pod.name", "k8s.pod.start_time", "k8s.pod.uid",
)

# A pod identifier has at most this many parts (the Collector's PodIdentifierMaxLength).
MAX_ASSOCIATION_SOURCES = 4

MetadataFrom = Literal["pod", "namespace", "node", "deployment", "statefulset", "daemonset", "job"]


class FieldExtractConfig(ComponentConfig):
    tag_name: str = Field("", description="Resource attribute to write. Default: "
                          "k8s.<from>.labels.<key> / k8s.<from>.annotations.<key>. With "
                          "key_regex it may refer to capture groups ($1, ${name}).")
    key: str = Field("", description="Exact label/annotation key to extract.")
    key_regex: str = Field("", description="Regular expression matching whole keys; every "
                           "matching label/annotation is extracted.")
    from_: MetadataFrom = Field("pod", alias="from", description="Object the label/annotation "
                                "is read from: pod, namespace, node, deployment, statefulset, "
                                "daemonset or job.")

    @model_validator(mode="after")
    def _check(self) -> FieldExtractConfig:
        if self.key and self.key_regex:
            raise ValueError("Out of Key or KeyRegex only one option is expected to be configured "
                             f"at a time, currently Key:{self.key} and KeyRegex:{self.key_regex}")
        if not self.key and not self.key_regex:
            raise ValueError("one of key or key_regex is required")
        if self.key_regex:
            try:
                goregex.compile(self.key_regex, anchored=True)
            except goregex.GoRegexError as exc:
                raise ValueError(f"key_regex is invalid: {exc}") from None
        return self


class ExtractConfig(ComponentConfig):
    metadata: list[str] = Field(default_factory=lambda: list(DEFAULT_METADATA),
                                description="Resource attributes to add from the pod and its "
                                "owners (an explicit list replaces the default one).")
    annotations: list[FieldExtractConfig] = Field(default_factory=list,
                                                  description="Annotations to extract.")
    labels: list[FieldExtractConfig] = Field(default_factory=list,
                                             description="Labels to extract.")
    otel_annotations: bool = Field(False, description="Pod annotations "
                                   "resource.opentelemetry.io/<attr> become resource attribute "
                                   "<attr>.")
    deployment_name_from_replicaset: bool = Field(
        False, description="Derive k8s.deployment.name from the ReplicaSet name (trimming the pod "
        "template hash) instead of watching ReplicaSets.")

    @field_validator("metadata")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in METADATA_FIELDS:
                raise ValueError(f'"{name}" is not a supported metadata field')
        return value


class FieldFilterConfig(ComponentConfig):
    key: str = Field(..., min_length=1, description="Field or label key.")
    value: str = Field("", description="Value compared with.")
    op: Literal["equals", "not-equals", "exists", "does-not-exist"] = Field(
        "equals", description="equals, not-equals (fields and labels), exists, does-not-exist "
        "(labels only).")


class FilterConfig(ComponentConfig):
    node: str = Field("", description="Only watch pods on this node.")
    node_from_env_var: str = Field("", description="Environment variable holding the node name "
                                   "to filter by (set from spec.nodeName via the downward API).")
    namespace: str = Field("", description="Only watch pods in this namespace.")
    fields: list[FieldFilterConfig] = Field(default_factory=list,
                                            description="Pod field selectors.")
    labels: list[FieldFilterConfig] = Field(default_factory=list,
                                            description="Pod label selectors.")

    @model_validator(mode="after")
    def _check(self) -> FilterConfig:
        if self.node_from_env_var and self.node_from_env_var not in os.environ:
            raise ValueError("`node_from_env_var` is configured but envvar "
                             f'"{self.node_from_env_var}" is not set')
        for f in self.fields:
            if f.op not in ("equals", "not-equals"):
                raise ValueError(f"'{f.op}' is not a valid field filter operation for "
                                 f"key={f.key}, value={f.value}")
        for f in self.labels:  # what the API server would reject, said before start-up
            text = {"equals": f"{f.key}={f.value}", "not-equals": f"{f.key}!={f.value}",
                    "exists": f.key, "does-not-exist": f"!{f.key}"}[f.op]
            parse_label_selector(text)
        return self

    def node_name(self) -> str:
        """The node pods are filtered by: the environment variable wins over `node`."""
        if self.node_from_env_var:
            return os.environ.get(self.node_from_env_var, "")
        return self.node


class AssociationSource(ComponentConfig):
    from_: Literal["connection", "resource_attribute"] = Field(
        ..., alias="from", description="connection (the client's IP) or resource_attribute.")
    name: str = Field("", description="Resource attribute name (for resource_attribute).")

    @model_validator(mode="after")
    def _check(self) -> AssociationSource:
        if self.from_ == "resource_attribute" and not self.name:
            raise ValueError("name is required when from is resource_attribute")
        return self


class PodAssociationConfig(ComponentConfig):
    sources: list[AssociationSource] = Field(..., min_length=1, description="All must resolve "
                                             "for the rule to apply.")

    @field_validator("sources")
    @classmethod
    def _limit(cls, value: list[AssociationSource]) -> list[AssociationSource]:
        if len(value) > MAX_ASSOCIATION_SOURCES:
            raise ValueError(f"too many association sources. limit is {MAX_ASSOCIATION_SOURCES}")
        return value


class ExcludePodConfig(ComponentConfig):
    name: str = Field(..., description="Regular expression matched against pod names.")

    @field_validator("name")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            goregex.compile(value)
        except goregex.GoRegexError as exc:
            raise ValueError(f"invalid pod name pattern: {exc}") from None
        return value


DEFAULT_EXCLUDES = ("jaeger-agent", "jaeger-collector")


class ExcludeConfig(ComponentConfig):
    pods: list[ExcludePodConfig] = Field(
        default_factory=lambda: [ExcludePodConfig(name=n) for n in DEFAULT_EXCLUDES],
        description="Pods whose data is never enriched (an empty list means the defaults).")

    def patterns(self) -> list[re.Pattern[str]]:
        names = [p.name for p in self.pods] or list(DEFAULT_EXCLUDES)
        return [goregex.compile(n) for n in names]


class K8sAttributesConfig(KubeAPIConfig):
    passthrough: bool = Field(False, description="Only add k8s.pod.ip from the connection; no "
                              "API access.")
    extract: ExtractConfig = Field(default_factory=ExtractConfig,
                                   description="Which metadata, labels and annotations to add.")
    filter: FilterConfig = Field(default_factory=FilterConfig,
                                 description="Which pods to watch (node, namespace, selectors).")
    pod_association: list[PodAssociationConfig] = Field(
        default_factory=list, description="Rules tried in order; the first whose sources all "
        "resolve is used. None: the connection's IP (or a k8s.pod.ip attribute).")
    exclude: ExcludeConfig = Field(default_factory=ExcludeConfig,
                                   description="Pods whose data is never enriched.")
    wait_for_metadata: bool = Field(False, description="Block start-up until the pod (and "
                                    "related) caches are synced; fail if they are not in time.")
    wait_for_metadata_timeout: Duration = Field(10.0, gt=0, description="How long start-up "
                                                "waits with wait_for_metadata.")
