"""Pod identifiers: what a resource is matched on, and the keys a pod is indexed under.

An identifier is a tuple of up to four (from, name, value) parts, one per source of an
association rule; a pod is indexed under the identifier of every rule it can satisfy, so a lookup
is one dict access. As in the Collector, a pod is also always indexed by its UID and its IP, so a
resource carrying k8s.pod.uid / k8s.pod.ip (or arriving from the pod's IP) is found without rules.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Sequence
from typing import Protocol

from processors.k8sattributes.config import PodAssociationConfig
from processors.k8sattributes.objects import Pod

CONNECTION = "connection"
RESOURCE_ATTRIBUTE = "resource_attribute"

Part = tuple[str, str, str]
Identifier = tuple[Part, ...]
Rule = tuple[tuple[str, str], ...]  # (from, name) per source


def compile_rules(config: Sequence[PodAssociationConfig]) -> tuple[Rule, ...]:
    return tuple(tuple((s.from_, s.name if s.from_ == RESOURCE_ATTRIBUTE else "")
                       for s in rule.sources) for rule in config)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class StringAttributes(Protocol):
    def string(self, key: str) -> str: ...


def from_resource(attrs: StringAttributes, client_ip: str, rules: Sequence[Rule]) -> Identifier:
    """The identifier of the first rule whose sources all resolve; () when none does.

    `attrs.string(key)` is a resource attribute's value when it is a string, else ""."""
    if not rules:
        return _without_rules(attrs, client_ip)
    for rule in rules:
        parts: list[Part] = []
        for source, name in rule:
            value = client_ip if source == CONNECTION else attrs.string(name)
            # host.name carries the pod IP in Kubernetes only when it is an IP at all
            if not value or (name == "host.name" and not _is_ip(value)):
                break
            parts.append((source, name, value))
        else:
            return tuple(parts)
    return ()


def _without_rules(attrs: StringAttributes, client_ip: str) -> Identifier:
    for value in (attrs.string("k8s.pod.ip"), attrs.string("ip"), client_ip):
        if value:
            return ((CONNECTION, "", value),)
    host = attrs.string("host.name")
    return ((CONNECTION, "", host),) if host and _is_ip(host) else ()


def for_pod(pod: Pod, rules: Sequence[Rule],
            attribute: Callable[[Pod, str], str]) -> list[Identifier]:
    """Every identifier `pod` is indexed under; `attribute(pod, name)` resolves other names."""
    ips = () if pod.host_network else pod.ips  # host-network pods share the node's IP
    ids: list[Identifier] = []
    for rule in rules:
        choices: list[list[Part]] = []
        for source, name in rule:
            values = _pod_values(pod, source, name, ips, attribute)
            if not values:
                break
            choices.append([(source, name, v) for v in values])
        else:
            ids.extend(itertools.product(*choices))
    if pod.uid:
        ids.append(((RESOURCE_ATTRIBUTE, "k8s.pod.uid", pod.uid),))
    for ip in ips:
        ids.append(((CONNECTION, "", ip),))
        ids.append(((RESOURCE_ATTRIBUTE, "k8s.pod.ip", ip),))
    return list(dict.fromkeys(ids))


def _pod_values(pod: Pod, source: str, name: str, ips: Sequence[str],
                attribute: Callable[[Pod, str], str]) -> Sequence[str]:
    if source == CONNECTION or name in ("k8s.pod.ip", "host.name"):
        return ips
    if name == "k8s.pod.uid":
        return (pod.uid,) if pod.uid else ()
    if name == "k8s.pod.name":
        return (pod.name,)
    if name == "k8s.namespace.name":
        return (pod.namespace,) if pod.namespace else ()
    if name == "container.id":
        return tuple(pod.container_ids)
    value = attribute(pod, name)
    return (value,) if value else ()


