"""The ready-to-run configurations under config/ load, and deploy/rbac.yaml grants what they use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.component import ComponentID
from gateway.config.loader import load_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {"CLUSTER_NAME": "prod-eu-1", "CLICKHOUSE_ENDPOINT": "http://clickhouse:8123",
       "CLICKHOUSE_PASSWORD": "secret", "NODE_NAME": "node-1", "OTELGW_DATA": "/tmp/otelgw"}


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    cfg = load_config(path, env=ENV)
    assert cfg.pipelines, path


def _rbac() -> dict[str, set[str]]:
    """apiGroup → resources the ClusterRole may get, list and watch."""
    granted: dict[str, set[str]] = {}
    for doc in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()):
        if doc["kind"] != "ClusterRole":
            continue
        for rule in doc["rules"]:
            if {"get", "list", "watch"} <= set(rule.get("verbs", [])):
                for group in rule.get("apiGroups", []):
                    granted.setdefault(group, set()).update(rule.get("resources", []))
    return granted


def test_kubernetes_config_is_complete_and_rbac_covers_it() -> None:
    cfg = load_config(ROOT / "config" / "kubernetes.yaml", env=ENV)
    assert set(map(str, cfg.receivers)) == {"otlp", "prometheus", "k8s_events"}
    assert {"memory_limiter", "k8sattributes", "resource"} <= set(
        map(str, cfg.processors))
    ch = cfg.exporters[ComponentID("clickhouse")].config
    assert ch.endpoint == "http://clickhouse:8123"  # a server, not the embedded store
    resource = cfg.processors[ComponentID("resource")].config
    assert [(a.key, a.value, a.action) for a in resource.attributes] == [
        ("k8s.cluster.name", "prod-eu-1", "upsert")]
    scrape = cfg.receivers[ComponentID("prometheus")].config.config.scrape_configs
    jobs = {job.job_name: job for job in scrape}
    assert set(jobs) == {"node-exporter", "linkerd-proxy", "traefik"}
    roles = {sd.role for job in scrape for sd in job.kubernetes_sd_configs}
    granted = _rbac()
    needed = {"": {"pods", "namespaces", "nodes", "endpoints", "services", "events"},
              "apps": {"replicasets"}, "discovery.k8s.io": {"endpointslices"}}
    for group, resources in needed.items():
        assert resources <= granted.get(group, set()), (group, resources)
    assert roles <= {"node", "pod", "service", "endpoints", "endpointslice"}
    # Linkerd's keep rule survived `$$` expansion as the regex Linkerd documents
    keep = jobs["linkerd-proxy"].relabel_configs[0]
    assert keep.action == "keep" and keep.regex == "^linkerd-proxy;linkerd-admin;linkerd$"
