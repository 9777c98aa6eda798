"""What to extract, decided once from the config: metadata switches and label/annotation rules.

The informers keep only the fields these rules read, and watch ReplicaSets, Namespaces, Nodes or
workloads only when a rule needs them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway import goregex
from processors.k8sattributes.config import FieldExtractConfig, K8sAttributesConfig

# ReplicaSets made by a Deployment are named <deployment>-<pod-template-hash (10 chars)>.
_RS_HASH = re.compile(r"^[a-z0-9]{10}$")
# Jobs made by a CronJob are named <cronjob>-<scheduled time in minutes>.
_CRONJOB_JOB = re.compile(r"^(.*)-\d+$")

OTEL_ANNOTATION_REGEX = r"resource\.opentelemetry\.io/(.+)"


def deployment_from_replicaset(name: str) -> str:
    """`web-6c45f8d6f6` → `web`; "" when the name does not end in a pod template hash."""
    head, sep, tail = name.rpartition("-")
    return head if sep and head and _RS_HASH.match(tail) else ""


def cronjob_from_job(name: str) -> str:
    match = _CRONJOB_JOB.match(name)
    return match.group(1) if match else ""


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One labels/annotations rule, compiled."""

    source: str  # pod, namespace, node, deployment, statefulset, daemonset, job
    kind: str  # "labels" or "annotations"
    name: str
    key: str
    key_regex: re.Pattern[str] | None = None
    template: goregex.Template | None = None  # tag_name with $1 / ${name} references

    @classmethod
    def from_config(cls, cfg: FieldExtractConfig, kind: str) -> FieldRule:
        # As the Collector: ^(?:key_regex)$, searched (a regex like `a)|(b` reopens it).
        regex = goregex.compile(cfg.key_regex, anchored=True) if cfg.key_regex else None
        name = cfg.tag_name
        if not name and cfg.key:
            name = f"k8s.{cfg.from_}.{kind}.{cfg.key}"
        template = goregex.Template(name, regex) if regex is not None and regex.groups and name \
            else None
        return cls(cfg.from_, kind, name, cfg.key, regex, template)

    def default_name(self, key: str) -> str:
        # The Collector writes the plural forms for pods, namespaces and nodes (its v0 names)
        # and the semantic-convention singular forms for workloads.
        if self.source in ("pod", "namespace", "node"):
            return f"k8s.{self.source}.{self.kind}.{key}"
        return f"k8s.{self.source}.{self.kind[:-1]}.{key}"

    def extract(self, values: Mapping[str, str], out: dict[str, str]) -> None:
        if self.key_regex is None:
            if self.key in values:
                out[self.name] = values[self.key]
            return
        for key, value in values.items():
            if not value:
                continue
            match = self.key_regex.search(key)
            if match is None:
                continue
            out[self.template.expand(match) if self.template is not None
                else self.default_name(key)] = value


@dataclass(frozen=True)
class Rules:
    metadata: frozenset[str]
    labels: tuple[FieldRule, ...] = ()
    annotations: tuple[FieldRule, ...] = ()
    deployment_name_from_replicaset: bool = False
    excludes: tuple[re.Pattern[str], ...] = field(default=())

    @classmethod
    def from_config(cls, cfg: K8sAttributesConfig) -> Rules:
        ex = cfg.extract
        annotations = [FieldRule.from_config(a, "annotations") for a in ex.annotations]
        if ex.otel_annotations:
            regex = goregex.compile(OTEL_ANNOTATION_REGEX, anchored=True)
            annotations.append(FieldRule("pod", "annotations", "$1", "", regex,
                                         goregex.Template("$1", regex)))
        return cls(frozenset(ex.metadata),
                   tuple(FieldRule.from_config(lb, "labels") for lb in ex.labels),
                   tuple(annotations), ex.deployment_name_from_replicaset,
                   tuple(cfg.exclude.patterns()))

    def has(self, *names: str) -> bool:
        return any(n in self.metadata for n in names)

    def rules_from(self, source: str) -> tuple[tuple[FieldRule, ...], tuple[FieldRule, ...]]:
        return (tuple(r for r in self.labels if r.source == source),
                tuple(r for r in self.annotations if r.source == source))

    def extracts_from(self, source: str) -> bool:
        return any(r.source == source for r in (*self.labels, *self.annotations))

    # -- which objects must be watched ----------------------------------------------------
    @property
    def needs_replicasets(self) -> bool:
        return self.has("k8s.deployment.uid") or (
            self.has("k8s.deployment.name", "service.name")
            and not self.deployment_name_from_replicaset) or self.extracts_from("deployment")

    @property
    def needs_namespaces(self) -> bool:
        return self.extracts_from("namespace") or self.has("k8s.cluster.uid")

    @property
    def needs_nodes(self) -> bool:
        return self.extracts_from("node") or self.has("k8s.node.uid")

    @property
    def needs_jobs(self) -> bool:
        return self.extracts_from("job") or self.has("k8s.cronjob.uid")

    @property
    def needs_containers(self) -> bool:
        return self.has("k8s.container.name", "container.id", "container.image.name",
                        "container.image.tag", "container.image.repo_digests", "service.version",
                        "service.instance.id")

    @property
    def needs_owners(self) -> bool:
        workloads = ("deployment", "statefulset", "daemonset", "job")
        return self.has("k8s.replicaset.name", "k8s.replicaset.uid", "k8s.deployment.name",
                        "k8s.deployment.uid", "k8s.daemonset.name", "k8s.daemonset.uid",
                        "k8s.statefulset.name", "k8s.statefulset.uid", "k8s.job.name",
                        "k8s.job.uid", "k8s.cronjob.name", "k8s.cronjob.uid", "service.name",
                        ) or any(self.extracts_from(w) for w in workloads)
