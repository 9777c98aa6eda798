"""The k8s_events receiver against the test API server over real HTTP: the recorded events of
set A are sent once, watch additions and changes once each, nothing again after a restart or a
410 relist, nothing marked while the pipeline refuses; namespaces filter; RBAC at start-up."""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.component import ComponentID, Host
from gateway.errors import GatewayError, RefusedError
from gateway.payload import Payload
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from receivers.k8sevents.config import K8sEventsConfig
from receivers.k8sevents.receiver import K8sEventsReceiver
from tests.k8sapi import FakeKubeAPI


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in its own event loop (fixtures stay synchronous)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))
    return run


def recorded_events(shared: Path) -> list[dict[str, Any]]:
    return json.loads((shared / "kubernetes" / "events.json").read_text())["items"]


@pytest.fixture
def api(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        FakeKubeAPI]:
    fake = FakeKubeAPI().start()
    for ev in recorded_events(shared_data):
        fake.add("events", ev)
    monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
    yield fake
    fake.stop()


class Sink:
    """Records (uid, resourceVersion) of every log record it takes; refuses while `refuse`."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, str]] = []
        self.requests = 0
        self.refuse = 0

    async def consume(self, payload: Payload) -> None:
        if self.refuse:
            self.refuse -= 1
            raise RefusedError("queue full", retry_after=0.05)
        self.requests += 1
        for rl in payload.message.resource_logs:
            for lr in rl.scope_logs[0].log_records:
                attrs = {kv.key: kv.value.string_value for kv in lr.attributes}
                self.taken.append((attrs["k8s.event.uid"], attrs["k8s.event.resource_version"]))


def receiver(tmp_path: Path, sink: Sink, **config: Any) -> K8sEventsReceiver:
    cfg = K8sEventsConfig.model_validate(
        {"auth_type": "kubeConfig", "directory": str(tmp_path / "cp"), **config})
    return K8sEventsReceiver(ComponentID("k8s_events"), cfg, {Signal.LOGS: sink})


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def settle(sink: Sink, seconds: float = 0.6) -> None:
    """Long enough for anything queued to be sent (the sender gathers for 0.2 s)."""
    await asyncio.sleep(seconds)


def api_ids(api: FakeKubeAPI, namespace: str = "") -> set[tuple[str, str]]:
    return {(e["metadata"]["uid"], e["metadata"]["resourceVersion"]) for e in api.objects("events")
            if not namespace or e["metadata"]["namespace"] == namespace}


def new_event(name: str, namespace: str = "default") -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": "Pod", "namespace": namespace, "name": "web-1",
                               "uid": "pod-uid-1"},
            "reason": "BackOff", "message": "Back-off restarting failed container",
            "type": "Warning", "count": 1, "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "kubelet", "host": "primary-node"}}


@sync
async def test_each_occurrence_once_across_watch_restart_and_relist(
        api: FakeKubeAPI, tmp_path: Path) -> None:
    sink = Sink()
    r = receiver(tmp_path, sink)
    await r.start(Host(SelfTelemetry()))
    try:
        await until(lambda: len(sink.taken) >= 97)
        await settle(sink)
        assert sorted(sink.taken) == sorted(api_ids(api)) and len(sink.taken) == 97
        assert sink.requests <= 2  # one request per gathered batch, not one per event

        added = api.add("events", new_event("web-1.backoff"))
        await until(lambda: len(sink.taken) == 98)
        changed = copy.deepcopy(added)
        changed["count"] = 2
        changed = api.modify("events", changed)
        await until(lambda: len(sink.taken) == 99)
        assert sink.taken[-2:] == [(added["metadata"]["uid"], added["metadata"]["resourceVersion"]),
                                   (changed["metadata"]["uid"],
                                    changed["metadata"]["resourceVersion"])]

        api.expire("events")  # 410: the informer relists; the diff and checkpoint hold
        await until(lambda: r.informers[0].lists == 2)
        await settle(sink)
        assert len(sink.taken) == 99
    finally:
        await r.shutdown()

    again = Sink()
    r2 = receiver(tmp_path, again)
    api.delete("events", "default", "web-1.backoff")  # expired while the gateway was down
    await r2.start(Host(SelfTelemetry()))
    try:
        await until(lambda: r2.informers[0].synced)
        await settle(again)
        assert again.taken == []
        assert r2.checkpoint is not None
        await until(lambda: changed["metadata"]["uid"] not in r2.checkpoint.sent)
        assert set(r2.checkpoint.sent.items()) == api_ids(api)
    finally:
        await r2.shutdown()
    saved = json.loads((tmp_path / "cp" / "k8s_events.json").read_text())
    assert set(saved["events"].items()) == api_ids(api)


@sync
async def test_refused_batches_are_retried_not_marked(api: FakeKubeAPI, tmp_path: Path) -> None:
    sink = Sink()
    sink.refuse = 3
    r = receiver(tmp_path, sink)
    await r.start(Host(SelfTelemetry()))
    try:
        await until(lambda: len(sink.taken) >= 97)
        await settle(sink)
        assert sink.refuse == 0 and len(sink.taken) == 97
    finally:
        await r.shutdown()


@sync
async def test_events_queued_at_shutdown_are_sent_at_the_next_start(
        api: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("receivers.k8sevents.receiver.SHUTDOWN_FLUSH", 0.3)
    sink = Sink()
    sink.refuse = 10**6
    r = receiver(tmp_path, sink)
    await r.start(Host(SelfTelemetry()))
    await until(lambda: r.informers[0].synced)
    await settle(sink)
    await r.shutdown()
    assert sink.taken == []
    ok = Sink()
    r2 = receiver(tmp_path, ok)
    await r2.start(Host(SelfTelemetry()))
    try:
        await until(lambda: len(ok.taken) >= 97)
        await settle(ok)
        assert len(ok.taken) == 97
    finally:
        await r2.shutdown()


class SlowSink(Sink):
    """Takes a batch only after `delay` seconds (an exporter blocking on a full queue)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def consume(self, payload: Payload) -> None:
        await asyncio.sleep(self.delay)
        await super().consume(payload)


@sync
async def test_a_batch_being_taken_at_shutdown_is_recorded_not_sent_again(
        api: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutdown waits for a consume under way (cancelled, the pipeline could have the batch
    while the checkpoint does not): what was taken is not sent again at the next start."""
    monkeypatch.setattr("receivers.k8sevents.receiver.SHUTDOWN_FLUSH", 0.1)
    slow = SlowSink(1.0)
    r = receiver(tmp_path, slow)
    await r.start(Host(SelfTelemetry()))
    await until(lambda: r.informers[0].synced)
    await asyncio.sleep(0.4)  # the first batch is with the pipeline
    await r.shutdown()
    assert 0 < len(slow.taken) <= 97
    again = Sink()
    r2 = receiver(tmp_path, again)
    await r2.start(Host(SelfTelemetry()))
    try:
        await settle(again, 1.0)
        assert not set(again.taken) & set(slow.taken)
        assert set(again.taken) | set(slow.taken) == api_ids(api)
    finally:
        await r2.shutdown()


@sync
async def test_namespaces_filter(api: FakeKubeAPI, tmp_path: Path) -> None:
    sink = Sink()
    r = receiver(tmp_path, sink, namespaces=["default"])
    await r.start(Host(SelfTelemetry()))
    try:
        await until(lambda: len(sink.taken) >= 12)
        api.add("events", new_event("other.1", namespace="kube-system"))
        api.add("events", new_event("mine.1", namespace="default"))
        await until(lambda: len(sink.taken) >= 13)
        await settle(sink)
        assert set(sink.taken) == api_ids(api, "default") and len(sink.taken) == 13
    finally:
        await r.shutdown()


@sync
async def test_forbidden_fails_the_start_naming_the_permission(
        api: FakeKubeAPI, tmp_path: Path) -> None:
    api.forbid("events")
    r = receiver(tmp_path, Sink())
    with pytest.raises(GatewayError) as err:
        await r.start(Host(SelfTelemetry()))
    message = str(err.value)
    assert "receivers::k8s_events" in message and "list events is forbidden" in message
    assert 'resources ["events"]' in message and '"list", "watch"' in message
    await r.shutdown()  # after a failed start: safe


@sync
async def test_storage_extension_holds_the_checkpoint(api: FakeKubeAPI, tmp_path: Path) -> None:
    from extensions.file_storage.config import FileStorageConfig
    from extensions.file_storage.extension import FileStorage

    sid = ComponentID("file_storage")
    ext = FileStorage(sid, FileStorageConfig(directory=str(tmp_path / "fs")))
    (tmp_path / "fs").mkdir()
    cfg = K8sEventsConfig.model_validate({"auth_type": "kubeConfig", "storage": "file_storage"})
    sink = Sink()
    r = K8sEventsReceiver(ComponentID("k8s_events", "a"), cfg, {Signal.LOGS: sink})
    await r.start(Host(SelfTelemetry(), extensions={sid: ext}))
    try:
        await until(lambda: len(sink.taken) >= 97)
    finally:
        await r.shutdown()
    saved = tmp_path / "fs" / "receiver_k8s_events_a" / "checkpoint.json"
    assert len(json.loads(saved.read_text())["events"]) == 97

    missing = K8sEventsReceiver(ComponentID("k8s_events"), cfg, {Signal.LOGS: sink})
    with pytest.raises(GatewayError, match="extension file_storage is not configured"):
        await missing.start(Host(SelfTelemetry()))
