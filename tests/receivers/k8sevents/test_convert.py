"""Event → OTLP log record mapping (the Collector's k8seventsreceiver plus otelgw's additions),
the checkpoint file and the configuration, on the recorded events of set A."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from receivers.k8sevents.checkpoint import Checkpoint
from receivers.k8sevents.config import K8sEventsConfig
from receivers.k8sevents.convert import SCOPE_NAME, to_request


def attributes_dict(attrs: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "string_value")
            for kv in attrs}


def recorded(shared: Path) -> list[dict[str, Any]]:
    return json.loads((shared / "kubernetes" / "events.json").read_text())["items"]


def by_name(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in events if e["metadata"]["name"] == name)


def converted(ev: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    rl = to_request([ev]).resource_logs[0]
    return attributes_dict(rl.resource.attributes), rl.scope_logs[0]


def test_every_recorded_event_converts(shared_data: Path) -> None:
    events = recorded(shared_data)
    req = to_request(events)
    assert len(req.resource_logs) == 97
    for rl, ev in zip(req.resource_logs, events, strict=True):
        (sl,) = rl.scope_logs
        assert sl.scope.name == SCOPE_NAME
        (lr,) = sl.log_records
        assert lr.body.string_value == ev.get("message", "")
        assert attributes_dict(lr.attributes)["k8s.event.uid"] == ev["metadata"]["uid"]
        assert lr.time_unix_nano > 0


def test_kubelet_node_event(shared_data: Path) -> None:
    ev = by_name(recorded(shared_data), "primary-node.187feaa1416f7b42")
    res, sl = converted(ev)
    assert res == {"k8s.node.name": "primary-node", "k8s.object.kind": "Node",
                   "k8s.object.name": "primary-node", "k8s.object.uid": "primary-node",
                   "k8s.object.fieldpath": "", "k8s.object.api_version": "",
                   "k8s.object.resource_version": ""}
    lr = sl.log_records[0]
    assert (lr.severity_number, lr.severity_text) == (9, "Normal")
    assert lr.time_unix_nano == 1765387557 * 10**9  # lastTimestamp 2025-12-10T17:25:57Z
    assert attributes_dict(lr.attributes) == {
        "k8s.event.reason": "Starting", "k8s.event.action": "",
        "k8s.event.start_time": "2025-12-10 17:25:57 +0000 UTC",
        "k8s.event.name": "primary-node.187feaa1416f7b42",
        "k8s.event.uid": "552b701e-6d15-4860-a2c6-2232b915c55a", "k8s.namespace.name": "",
        "k8s.event.count": 1, "k8s.event.resource_version": "200",
        "k8s.event.first_timestamp": "2025-12-10T17:25:57Z",
        "k8s.event.reporting_component": "kubelet", "k8s.event.type": "Normal"}


def test_scheduler_pod_event_carries_the_pod_for_k8sattributes(shared_data: Path) -> None:
    ev = next(e for e in recorded(shared_data)
              if e["involvedObject"]["kind"] == "Pod" and e["reason"] == "Scheduled")
    res, sl = converted(ev)
    assert "k8s.node.name" not in res  # no source.host: left for k8sattributes, not ""
    assert res["k8s.pod.name"] == ev["involvedObject"]["name"]
    assert res["k8s.pod.uid"] == ev["involvedObject"]["uid"]
    assert res["k8s.namespace.name"] == "kube-system"
    attrs = attributes_dict(sl.log_records[0].attributes)
    assert "k8s.event.count" not in attrs  # count 0: left out, as upstream
    assert attrs["k8s.event.action"] == "Binding"
    assert attrs["k8s.event.reporting_component"] == "default-scheduler"
    assert sl.log_records[0].time_unix_nano == 1765387564_033644000  # eventTime, microseconds


def test_warning_and_unknown_types() -> None:
    ev = {"metadata": {"name": "x", "uid": "u", "resourceVersion": "5"}, "type": "Warning",
          "message": "Back-off", "involvedObject": {"kind": "Pod", "name": "p"}}
    lr = converted(ev)[1].log_records[0]
    assert (lr.severity_number, lr.severity_text) == (13, "Warning")
    assert lr.time_unix_nano == 0  # no time at all: left 0, as upstream
    lr = converted({**ev, "type": "Odd"})[1].log_records[0]
    assert (lr.severity_number, lr.severity_text) == (0, "")
    assert attributes_dict(lr.attributes)["k8s.event.type"] == "Odd"


def test_series_time_and_count() -> None:
    ev = {"metadata": {"name": "x", "uid": "u", "resourceVersion": "7"},
          "eventTime": "2025-01-01T00:00:00.000001Z",
          "series": {"count": 4, "lastObservedTime": "2025-01-01T00:05:00.5Z"},
          "involvedObject": {"kind": "Node", "name": "n1"}, "reportingComponent": "kubelet",
          "reportingInstance": "n1"}
    res, sl = converted(ev)
    lr = sl.log_records[0]
    assert lr.time_unix_nano == 1735689900_500000000
    attrs = attributes_dict(lr.attributes)
    assert attrs["k8s.event.count"] == 4
    assert attrs["k8s.event.first_timestamp"] == "2025-01-01T00:00:00.000001Z"
    assert res["k8s.node.name"] == "n1"


def test_malformed_fields_do_not_raise() -> None:
    ev = {"metadata": "?", "involvedObject": ["x"], "source": 3, "count": "many",
          "eventTime": "yesterday", "series": None}
    res, sl = converted(ev)
    assert res["k8s.object.kind"] == ""
    assert sl.log_records[0].time_unix_nano == 0


def test_checkpoint_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cp.json"
    cp = Checkpoint(path)
    cp.load()
    assert cp.sent == {}
    cp.mark("a", "1")
    cp.mark("b", "2")
    cp.write(cp.snapshot())
    again = Checkpoint(path)
    again.load()
    assert again.sent == {"a": "1", "b": "2"} and again.is_sent("a", "1")
    assert not again.is_sent("a", "3")
    assert again.keep_only({"b"}) == 1 and again.sent == {"b": "2"}
    assert not list(path.parent.glob("*.tmp"))
    for damage in (b"{not json", b"[1, 2]", b'{"version": 99, "events": {}}'):
        path.write_bytes(damage)
        broken = Checkpoint(path)
        broken.load()
        assert broken.sent == {}


@pytest.mark.parametrize("config, message", [
    ({"namespaces": ["Default"]}, "not a valid namespace name"),
    ({"namespaces": ["a", "a"]}, "listed twice"),
    ({"storage": "file_storage", "directory": "x"}, "either storage"),
    ({"auth_type": "token"}, "auth_type"),
    ({"namespace": "a"}, "namespace"),
])
def test_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        K8sEventsConfig.model_validate(config)


def test_collector_config_is_accepted() -> None:
    cfg = K8sEventsConfig.model_validate({"auth_type": "kubeConfig",
                                          "namespaces": ["default", "my-namespace"]})
    assert cfg.namespaces == ["default", "my-namespace"]
