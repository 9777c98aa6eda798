"""gateway.kube against the test API server (tests/k8sapi.py) loaded with recorded objects."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.kube import resources
from gateway.kube.client import KubeClient, KubeError, KubeForbidden, KubeGone
from gateway.kube.informer import Informer
from gateway.kube.resources import EVENTS_V1, NODES, PODS, REPLICASETS
from gateway.kube.selectors import parse_field_selector, parse_label_selector
from tests.k8sapi import FakeKubeAPI


pytestmark = pytest.mark.usefixtures("fast_informer_backoff")


@pytest.fixture
def api(recorded_kube_api: FakeKubeAPI) -> FakeKubeAPI:
    return recorded_kube_api


def run(coro, timeout: float = 15):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(cond, timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def query(request: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.split(" ", 1)[1]).query).items()}


def new_pod(api: FakeKubeAPI, name: str, ip: str = "10.42.0.99") -> dict:
    pod = copy.deepcopy(api.objects("pods")[0])
    pod["metadata"] = {"name": name, "namespace": "kube-system", "labels": {"app": name}}
    pod["status"]["podIP"] = ip
    return pod


# ---- client ----------------------------------------------------------------------------------

def test_list_follows_continue_tokens(api: FakeKubeAPI) -> None:
    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        try:
            return await client.list(PODS, limit=2)
        finally:
            await client.close()

    items, rv = run(main())
    assert [i["metadata"]["name"] for i in items] == [p["metadata"]["name"]
                                                      for p in api.objects("pods")]
    assert len(items) == 7 and rv == "687"
    lists = [r for r in api.requests if r.startswith("GET /api/v1/pods")]
    assert len(lists) == 4  # 2 + 2 + 2 + 1
    assert "continue" not in query(lists[0]) and all("continue" in query(r) for r in lists[1:])


def test_expired_continue_token_restarts_the_list_unpaged(api: FakeKubeAPI) -> None:
    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        seen = []
        try:
            async for page, _, restarted in client.list_pages(PODS, limit=3):
                seen.append((len(page), restarted))
                if len(seen) == 1:
                    api.modify("nodes", api.objects("nodes")[0])
                    api.expire("pods")  # the snapshot of the first page is compacted away
            # list() drops the stale first page: a pod deleted meanwhile is not returned.
            first = api.objects("pods")[0]["metadata"]["name"]

            def between_pages(request: str) -> None:
                if "continue=" in request and api.on_request is not None:
                    api.on_request = None
                    api.delete("pods", "kube-system", first)
                    api.expire("pods")

            api.on_request = between_pages
            items, _ = await client.list(PODS, limit=3)
        finally:
            await client.close()
        return seen, first, items

    seen, first, items = run(main())
    assert seen == [(3, False), (7, True)]
    assert "limit" not in query(api.requests[-1])
    assert sorted(i["metadata"]["name"] for i in items) == sorted(
        p["metadata"]["name"] for p in api.objects("pods"))
    assert first not in [i["metadata"]["name"] for i in items] and len(items) == 6


def test_selectors_are_sent_and_applied(api: FakeKubeAPI) -> None:
    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        try:
            done, _ = await client.list(PODS, namespace="kube-system",
                                        field_selector="status.phase=Succeeded")
            dns, _ = await client.list(PODS, label_selector="k8s-app in (kube-dns),"
                                                            "pod-template-hash")
            not_dns, _ = await client.list(PODS, label_selector="k8s-app!=kube-dns")
            return done, dns, not_dns
        finally:
            await client.close()

    done, dns, not_dns = run(main())
    assert sorted(p["metadata"]["name"][:25] for p in done) == [
        "helm-install-traefik-5wnn", "helm-install-traefik-crd-"]
    assert [p["metadata"]["name"] for p in dns] == ["coredns-56f6fc8fd7-p4x9z"]
    assert len(not_dns) == 6  # != also matches pods without the label


def test_forbidden_names_verb_resource_and_identity(api: FakeKubeAPI, tmp_path: Path) -> None:
    api.forbid("replicasets")
    api.forbid("pods")

    async def main():
        client = await KubeClient.create("kubeConfig",
                                         kubeconfig=str(api.write_kubeconfig(tmp_path / "kc")))
        try:
            with pytest.raises(KubeForbidden) as listing:
                await client.list(REPLICASETS, namespace="kube-system")
            with pytest.raises(KubeForbidden) as watching:
                async for _ in client.watch(PODS, resource_version="687"):
                    pass
            return listing.value, watching.value
        finally:
            await client.close()

    listing, watching = run(main())
    message = str(listing)
    assert "list replicasets.apps" in message
    assert "system:serviceaccount:otelgw:otelgw" in message
    assert 'apiGroups ["apps"], resources ["replicasets"]' in message
    assert (listing.verb, listing.resource) == ("list", "replicasets.apps")
    assert watching.verb == "watch" and '"pods"' in str(watching)


def test_kubeconfig_sends_the_token(api: FakeKubeAPI, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = api.write_kubeconfig(tmp_path / "config")
    monkeypatch.setenv("KUBECONFIG", str(path))

    async def main():
        client = await KubeClient.create("kubeConfig", context="fake")  # from $KUBECONFIG
        try:
            return await client.list(NODES)
        finally:
            await client.close()

    items, _ = run(main())
    assert [n["metadata"]["name"] for n in items] == ["primary-node"]
    assert api.authorizations[-1] == f"Bearer {api.token}"


def test_wrong_token_is_a_clear_401(api: FakeKubeAPI, tmp_path: Path) -> None:
    api.token = "the-right-one"
    path = api.write_kubeconfig(tmp_path / "config")
    api.token = "rotated"

    async def main():
        client = await KubeClient.create("kubeConfig", kubeconfig=str(path))
        try:
            await client.list(PODS)
        finally:
            await client.close()

    with pytest.raises(KubeError, match="401 Unauthorized"):
        run(main())


def test_missing_kubeconfig_context_is_reported(api: FakeKubeAPI, tmp_path: Path) -> None:
    path = api.write_kubeconfig(tmp_path / "config")
    with pytest.raises(KubeError, match="context nope"):
        run(KubeClient.create("kubeConfig", kubeconfig=str(path), context="nope"))


def test_service_account_token_is_reread_when_it_rotates(
        api: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes_asyncio.config import incluster_config
    import datetime

    monkeypatch.setattr(incluster_config, "TOKEN_REFRESH_PERIOD", datetime.timedelta(0))
    (tmp_path / "token").write_text("first")
    (tmp_path / "ca.crt").write_text("not used over http")
    api.token = "first"

    async def main():
        client = await KubeClient.create("serviceAccount", api_server=api.url,
                                         service_account_dir=str(tmp_path))
        try:
            await client.list(NODES)
            (tmp_path / "token").write_text("second")
            api.token = "second"
            await client.list(NODES)
        finally:
            await client.close()

    run(main())
    assert api.authorizations[-2:] == ["Bearer first", "Bearer second"]


def test_in_cluster_without_environment_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeError, match="KUBERNETES_SERVICE_HOST"):
        run(KubeClient.create("serviceAccount"))
    with pytest.raises(KubeError, match="unknown auth_type 'token'"):
        run(KubeClient.create("token"))


def test_watch_yields_events_and_410_error_event_raises_gone(api: FakeKubeAPI) -> None:
    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        events = []
        try:
            stream = client.watch(PODS, resource_version="687", timeout_seconds=1)
            api.add("pods", new_pod(api, "watched"))
            async for event in stream:
                events.append(event)
            api.expire("pods")
            with pytest.raises(KubeGone, match="too old resource version: 687"):
                async for _ in client.watch(PODS, resource_version="687"):
                    pass
        finally:
            await client.close()
        return events

    events = run(main())
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "watched")]
    assert events[0]["object"]["kind"] == "Pod"


def test_events_served_as_events_k8s_io(api: FakeKubeAPI) -> None:
    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        try:
            return await client.list(EVENTS_V1, namespace="default")
        finally:
            await client.close()

    items, _ = run(main())
    assert len(items) == 12
    assert all("regarding" in e and "involvedObject" not in e for e in items)


# ---- the test server ----------------------------------------------------------------------

def test_fake_serves_every_recorded_resource(api: FakeKubeAPI, shared_data: Path) -> None:
    recorded = {p.stem: json.loads(p.read_text())
                for p in (shared_data / "kubernetes").glob("*.json")}

    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        out = {}
        try:
            for res in resources.ALL:
                if res.plural in recorded and res.group != "events.k8s.io":
                    every, rv = await client.list(res, limit=5)
                    system, _ = await client.list(res, namespace="kube-system")
                    out[res.plural] = (len(every), rv, len(system), res.namespaced)
        finally:
            await client.close()
        return out

    served = run(main())
    assert set(served) == {"pods", "nodes", "namespaces", "services", "endpoints", "events",
                           "endpointslices", "replicasets", "deployments", "daemonsets", "jobs"}
    for plural, (count, rv, in_system, namespaced) in served.items():
        items = recorded[plural]["items"]
        assert (count, rv) == (len(items), "687"), plural
        system = [i for i in items if i["metadata"].get("namespace") == "kube-system"]
        assert in_system == (len(system) if namespaced else count), plural
    assert served["events"][2] == 85 and served["pods"][2] == 7


def test_fake_label_selector_operators(api: FakeKubeAPI) -> None:
    async def names(selector: str) -> list[str]:
        client = await KubeClient.create("none", api_server=api.url)
        try:
            items, _ = await client.list(PODS, label_selector=selector)
            return sorted(i["metadata"]["name"] for i in items)
        finally:
            await client.close()

    assert run(names("k8s-app notin (kube-dns),!job-name,app")) == [
        "local-path-provisioner-5cf85fd84d-jntjc", "svclb-traefik-a6edc2ef-c2sjr"]
    assert run(names("app in (local-path-provisioner)")) == [
        "local-path-provisioner-5cf85fd84d-jntjc"]
    assert run(names("job-name")) == ["helm-install-traefik-5wnn9",
                                      "helm-install-traefik-crd-nrgzd"]


def test_fake_runs_standalone(shared_data: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    import urllib.request

    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "tests.k8sapi", "--data",
                             str(shared_data / "kubernetes"), "--port", "0", "--kubeconfig",
                             str(kubeconfig)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(f"{url}/api/v1/nodes", timeout=5) as resp:
            nodes = json.load(resp)
        assert [n["metadata"]["name"] for n in nodes["items"]] == ["primary-node"]
        assert url in kubeconfig.read_text()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_fake_initial_events_stream_has_the_recorded_shape(api: FakeKubeAPI,
                                                           shared_data: Path) -> None:
    recorded = [json.loads(line) for line in
                (shared_data / "kubernetes" / "watch-pods-sendinitialevents.jsonl").open()]

    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        out = []
        try:
            url = (f"{api.url}/api/v1/namespaces/kube-system/pods?allowWatchBookmarks=true&"
                   f"resourceVersion=0&resourceVersionMatch=NotOlderThan&"
                   f"sendInitialEvents=true&watch=true&timeoutSeconds=1")
            async with client._get_session().get(url) as resp:
                async for line in resp.content:
                    out.append(json.loads(line))
        finally:
            await client.close()
        return out

    served = run(main())
    assert [e["type"] for e in served] == ["ADDED"] * 7 + ["BOOKMARK"]
    bookmark, want = served[-1]["object"], recorded[-1]["object"]
    assert bookmark.keys() == want.keys() and bookmark["spec"] == want["spec"]
    assert bookmark["metadata"]["annotations"] == want["metadata"]["annotations"]
    assert bookmark["metadata"]["resourceVersion"] == api.resource_version
    assert served[0]["object"].keys() >= {"kind", "apiVersion", "metadata", "spec", "status"}


# ---- informer --------------------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def add(self, key, value):
        self.calls.append(("add", key))

    def update(self, key, old, new):
        self.calls.append(("update", key))

    def delete(self, key, value):
        self.calls.append(("delete", key))


def pod_ip(pod: dict) -> tuple[str, str] | None:
    """A reduced pod: what k8sattributes-style association needs."""
    if pod["status"].get("phase") == "Succeeded":
        return None
    return pod["metadata"]["name"], pod["status"].get("podIP", "")


def test_informer_keeps_only_transformed_objects(api: FakeKubeAPI) -> None:
    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        inf = Informer(client, PODS, transform=pod_ip)
        await inf.start()
        try:
            assert await inf.wait_synced(5)
            api.add("pods", new_pod(api, "late", "10.42.0.50"))
            await until(lambda: "kube-system/late" in inf.items)
            return dict(inf.items)
        finally:
            await inf.stop()
            await client.close()

    items = run(main())
    assert items["kube-system/late"] == ("late", "10.42.0.50")
    assert len(items) == 6  # 7 recorded - 2 Succeeded + 1 added
    assert all(isinstance(v, tuple) for v in items.values())


def test_watch_resumes_after_api_server_restart_without_missing_events(api: FakeKubeAPI) -> None:
    rec = Recorder()

    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        inf = Informer(client, PODS, on_add=rec.add, on_update=rec.update,
                       on_delete=rec.delete)
        await inf.start()
        try:
            assert await inf.wait_synced(5)
            await until(lambda: any("watch=1" in r for r in api.requests), what="watch")
            rv_before = inf.resource_version
            rec.calls.clear()
            # The server goes away with the watch open; changes happen meanwhile.
            await asyncio.to_thread(api.stop)
            gone = api.objects("pods")[1]
            changed = api.objects("pods")[2]
            changed["metadata"]["labels"]["touched"] = "yes"
            api.add("pods", new_pod(api, "while-down"))
            api.modify("pods", changed)
            api.delete("pods", "kube-system", gone["metadata"]["name"])
            await asyncio.sleep(0.3)  # the informer retries against a closed port
            await asyncio.to_thread(api.start)
            await until(lambda: inf.resource_version == api.resource_version, what="resume")
            assert inf.lists == 1  # resumed, not relisted
            return rv_before, gone, changed, dict(inf.items)
        finally:
            await inf.stop()
            await client.close()

    rv_before, gone, changed, items = run(main())
    names = changed["metadata"]["name"], gone["metadata"]["name"]
    assert rec.calls == [("add", "kube-system/while-down"), ("update", f"kube-system/{names[0]}"),
                         ("delete", f"kube-system/{names[1]}")]
    assert items[f"kube-system/{names[0]}"]["metadata"]["labels"]["touched"] == "yes"
    assert sorted(items) == sorted(f"kube-system/{p['metadata']['name']}"
                                   for p in api.objects("pods"))
    watches = [query(r) for r in api.requests if "watch=1" in r]
    assert watches[0]["resourceVersion"] == "687"
    assert rv_before in [w["resourceVersion"] for w in watches[1:]]
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)


def test_bookmark_advances_the_resume_point(api: FakeKubeAPI) -> None:
    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        inf = Informer(client, PODS)
        await inf.start()
        try:
            assert await inf.wait_synced(5)
            await until(lambda: any("watch=1" in r for r in api.requests), what="watch")
            node = api.objects("nodes")[0]
            node["metadata"]["labels"]["x"] = "y"
            api.modify("nodes", node)  # another kind moves the global resourceVersion
            assert inf.resource_version == "687"
            api.bookmark("pods")
            await until(lambda: inf.resource_version == api.resource_version, what="bookmark")
            await asyncio.to_thread(api.restart)
            await until(lambda: sum("watch=1" in r for r in api.requests) == 2, what="rewatch")
        finally:
            await inf.stop()
            await client.close()

    run(main())
    watches = [query(r) for r in api.requests if "watch=1" in r]
    assert watches[1]["resourceVersion"] == api.resource_version != "687"


def test_gone_relists_and_diffs(api: FakeKubeAPI) -> None:
    rec = Recorder()

    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        inf = Informer(client, PODS, on_add=rec.add, on_update=rec.update,
                       on_delete=rec.delete)
        await inf.start()
        try:
            assert await inf.wait_synced(5)
            assert len(rec.calls) == 7 and {c[0] for c in rec.calls} == {"add"}
            rec.calls.clear()
            await asyncio.to_thread(api.stop)
            pods = api.objects("pods")
            pods[0]["status"]["phase"] = "Failed"
            api.modify("pods", pods[0])
            api.delete("pods", "kube-system", pods[1]["metadata"]["name"])
            api.add("pods", new_pod(api, "fresh"))
            api.expire("pods")  # the informer's resourceVersion is compacted away
            await asyncio.to_thread(api.start)
            await until(lambda: inf.lists == 2, what="relist")
            return pods
        finally:
            await inf.stop()
            await client.close()

    pods = run(main())
    assert sorted(rec.calls) == sorted([
        ("update", f"kube-system/{pods[0]['metadata']['name']}"),
        ("delete", f"kube-system/{pods[1]['metadata']['name']}"),
        ("add", "kube-system/fresh")])
    lists = [r for r in api.requests if r.startswith("GET /api/v1/pods?") and "watch" not in r]
    assert len(lists) == 2


def test_gone_in_an_open_watch_relists(api: FakeKubeAPI) -> None:
    rec = Recorder()

    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        inf = Informer(client, PODS, on_add=rec.add, on_update=rec.update,
                       on_delete=rec.delete)
        await inf.start()
        try:
            assert await inf.wait_synced(5)
            await until(lambda: any("watch=1" in r for r in api.requests), what="watch")
            rec.calls.clear()
            api.expire("pods")  # ERROR 410 arrives inside the open stream
            await until(lambda: inf.lists == 2, what="relist")
            await asyncio.sleep(0.1)
        finally:
            await inf.stop()
            await client.close()

    run(main())
    assert rec.calls == []  # nothing changed: the relist diff is empty


def test_forbidden_informer_reports_rbac_and_recovers(api: FakeKubeAPI) -> None:
    api.forbid("pods")

    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        inf = Informer(client, PODS)
        await inf.start()
        try:
            assert not await inf.wait_synced(0.5)
            error = inf.last_error
            attempts = len(api.requests)
            api.forbid("pods", False)
            assert await inf.wait_synced(5)
            return error, attempts, inf.last_error
        finally:
            await inf.stop()
            await client.close()

    error, attempts, after = run(main())
    assert error is not None and 'cannot list resource "pods"' in error
    assert "system:anonymous" in error and 'resources ["pods"]' in error
    assert 1 < attempts < 10  # retried, with backoff
    assert after is None


def test_callback_errors_do_not_stop_the_informer(api: FakeKubeAPI) -> None:
    def broken(key, value):
        raise RuntimeError("handler bug")

    async def main():
        client = await KubeClient.create("none", api_server=api.url)
        inf = Informer(client, PODS, on_add=broken)
        await inf.start()
        try:
            assert await inf.wait_synced(5)
            api.add("pods", new_pod(api, "after-bug"))
            await until(lambda: "kube-system/after-bug" in inf.items)
        finally:
            await inf.stop()
            await client.close()

    run(main())


# ---- selectors -------------------------------------------------------------------------------

def test_selector_syntax_errors_are_explained() -> None:
    assert len(parse_label_selector("a=b,c in (d, e),!f,g notin (h),i")) == 5
    with pytest.raises(ValueError, match="not a valid label key"):
        parse_label_selector("bad key=1")
    with pytest.raises(ValueError, match="no operator"):
        parse_field_selector("spec.nodeName")
    assert parse_field_selector(r"metadata.name=a\,b")[0].value == "a,b"
