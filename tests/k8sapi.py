"""The test Kubernetes API server: the one fake in this project, fed with recorded real payloads.

It speaks the parts of the API that list/watch clients use, the way kube-apiserver does:

- list: `limit`/`continue` paging (a continue token expires with `expire()` → 410 Expired),
  `resourceVersion` of the list, `labelSelector`, `fieldSelector`; items without kind/apiVersion
  (the real server omits them in lists), sorted by namespace/name like etcd keys.
- watch (`watch=1`): chunked JSON lines `{"type": ..., "object": ...}` with kind/apiVersion on
  each object; from a resourceVersion the history after it is replayed; from "" / "0" synthetic
  ADDED events for the current state, then (with `sendInitialEvents=true`) the BOOKMARK with the
  `k8s.io/initial-events-end` annotation; BOOKMARKs only with `allowWatchBookmarks=true`; the
  stream ends after `timeoutSeconds`; a too old resourceVersion gets HTTP 200 and an ERROR event
  with a 410 Status (as the watch cache answers); an object that stops matching the selector is
  sent as DELETED, one that starts matching as ADDED.
- 403 with the real Status body (`forbid()`), 401 for a wrong bearer token, 404 for unknown paths.
- one global resourceVersion counter, as etcd has.

Objects live in memory per plural ("pods", "events", ...). Core events are also served as
events.k8s.io/v1 Events, converted the way the API server converts them.

Runs in a background thread with its own event loop, so sync tests and gateway subprocesses can
both use it; `python -m tests.k8sapi --data ../shared/data/kubernetes --port N` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from gateway.kube.selectors import (
    FieldRequirement,
    LabelRequirement,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)

# plural -> (group, version, kind, namespaced)
KINDS: dict[str, tuple[str, str, str, bool]] = {
    "pods": ("", "v1", "Pod", True),
    "nodes": ("", "v1", "Node", False),
    "namespaces": ("", "v1", "Namespace", False),
    "services": ("", "v1", "Service", True),
    "endpoints": ("", "v1", "Endpoints", True),
    "events": ("", "v1", "Event", True),
    "configmaps": ("", "v1", "ConfigMap", True),
    "endpointslices": ("discovery.k8s.io", "v1", "EndpointSlice", True),
    "replicasets": ("apps", "v1", "ReplicaSet", True),
    "deployments": ("apps", "v1", "Deployment", True),
    "statefulsets": ("apps", "v1", "StatefulSet", True),
    "daemonsets": ("apps", "v1", "DaemonSet", True),
    "jobs": ("batch", "v1", "Job", True),
    "cronjobs": ("batch", "v1", "CronJob", True),
    "ingresses": ("networking.k8s.io", "v1", "Ingress", True),
}
# Served views of another plural's storage: (group, plural) -> storage plural.
ALIASES = {("events.k8s.io", "events"): "events"}

# Field selectors the real API server accepts beyond metadata.name / metadata.namespace
# (anything else is a 400 "field label not supported").
FIELDS = {
    "pods": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
             "status.nominatedNodeName"},
    "nodes": {"spec.unschedulable"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion",
               "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
               "reportingComponent", "source", "type"},
    "jobs": {"status.successful"},
    "namespaces": {"status.phase"},
    "replicasets": {"status.replicas"},
    "services": {"spec.clusterIP", "spec.type"},
}

_CLOSE = object()
HISTORY_LIMIT = 10_000


def _key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else meta.get("name", "")


def _field_value(obj: dict, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def event_to_events_v1(ev: dict) -> dict:
    """core/v1 Event -> events.k8s.io/v1 Event (the API server's conversion)."""
    out: dict[str, Any] = {"metadata": ev.get("metadata", {})}
    renames = {"eventTime": "eventTime", "series": "series", "reportingComponent":
               "reportingController", "reportingInstance": "reportingInstance",
               "action": "action", "reason": "reason", "involvedObject": "regarding",
               "related": "related", "message": "note", "type": "type",
               "source": "deprecatedSource", "firstTimestamp": "deprecatedFirstTimestamp",
               "lastTimestamp": "deprecatedLastTimestamp", "count": "deprecatedCount"}
    for old, new in renames.items():
        if ev.get(old) not in (None, {}, ""):
            out[new] = ev[old]
    if "eventTime" not in out:
        out["eventTime"] = None
    return out


@dataclass(eq=False)
class _Watch:
    plural: str
    group: str
    namespace: str
    labels: tuple[LabelRequirement, ...]
    fields: tuple[FieldRequirement, ...]
    bookmarks: bool
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    transport: Any = None

    def matches(self, obj: dict) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        if not labels_match(self.labels, meta.get("labels")):
            return False
        return all(r.matches(_field_value(obj, r.field)) for r in self.fields)

    def push(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class FakeKubeAPI:
    """A Kubernetes API server for tests. Thread-safe: mutate from any thread."""

    def __init__(self, port: int = 0, *, token: str = "otelgw-test-token",
                 user: str = "system:serviceaccount:otelgw:otelgw") -> None:
        self.port = port
        self.token = token
        """Bearer token that authenticates as `user`; another token gets 401, none anonymous."""
        self.user = user
        self.url = ""
        self.requests: list[str] = []
        """"GET /api/v1/pods?watch=1&..." per request, in arrival order."""
        self.authorizations: list[str] = []
        """The Authorization header of each request ("" when absent)."""
        self.on_request: Callable[[str], None] | None = None
        """Called (in the server thread) with "GET /path?query" before a request is served:
        lets a test change the cluster between two pages of one list."""
        self._lock = threading.RLock()
        self._rv = 1
        self._store: dict[str, dict[str, dict]] = {p: {} for p in KINDS}
        self._history: dict[str, list[tuple[int, str, dict, dict | None]]] = {
            p: [] for p in KINDS}
        self._oldest: dict[str, int] = {p: 0 for p in KINDS}
        self._forbidden: set[str] = set()
        self._watches: set[_Watch] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeKubeAPI:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()'s caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-kube-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        # An abrupt drop (no terminating chunk), as when the API server or a proxy goes away.
        with self._lock:
            watches, self._watches = list(self._watches), set()
        for w in watches:
            if w.transport is not None:
                w.transport.abort()
            w.queue.put_nowait(_CLOSE)
        if self._runner is not None:
            await self._runner.cleanup()

    def restart(self) -> None:
        """Stop and start on the same port: open watches drop, the objects stay."""
        self.stop()
        self.start()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "otelgw", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "otelgw"}}],
        }
        path = Path(path)
        path.write_text(yaml.safe_dump(config))
        return path

    # ---- state -----------------------------------------------------------------------------

    def load_recorded(self, data_dir: Path) -> None:
        """Load every `<plural>.json` list in `data_dir` (e.g. ../shared/data/kubernetes)."""
        with self._lock:
            top = self._rv
            for path in sorted(Path(data_dir).glob("*.json")):
                plural = path.stem
                if plural not in KINDS:
                    continue
                body = json.loads(path.read_text())
                for item in body.get("items") or []:
                    obj = self._strip(item)
                    self._store[plural][_key(obj)] = obj
                    top = max(top, int(obj["metadata"].get("resourceVersion") or 0))
                list_rv = (body.get("metadata") or {}).get("resourceVersion") or "0"
                top = max(top, int(list_rv))
            self._rv = top

    @staticmethod
    def _strip(obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        return obj

    def objects(self, plural: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for _, o in sorted(self._store[plural].items())]

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    def add(self, plural: str, obj: dict) -> dict:
        obj = self._strip(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with self._lock:
            if _key(obj) in self._store[plural]:
                raise KeyError(f"{plural} {_key(obj)} already exists")
            return self._commit(plural, "ADDED", obj, None)

    def modify(self, plural: str, obj: dict) -> dict:
        obj = self._strip(obj)
        with self._lock:
            old = self._store[plural].get(_key(obj))
            if old is None:
                raise KeyError(f"{plural} {_key(obj)} does not exist")
            obj["metadata"].setdefault("uid", old["metadata"].get("uid"))
            return self._commit(plural, "MODIFIED", obj, old)

    def delete(self, plural: str, namespace: str, name: str) -> dict:
        key = f"{namespace}/{name}" if namespace else name
        with self._lock:
            old = self._store[plural].get(key)
            if old is None:
                raise KeyError(f"{plural} {key} does not exist")
            return self._commit(plural, "DELETED", copy.deepcopy(old), old)

    def _commit(self, plural: str, kind: str, obj: dict, old: dict | None) -> dict:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if kind == "DELETED":
            del self._store[plural][_key(obj)]
        else:
            self._store[plural][_key(obj)] = obj
        history = self._history[plural]
        history.append((self._rv, kind, obj, old))
        if len(history) > HISTORY_LIMIT:  # compaction, as etcd does
            dropped = history.pop(0)
            self._oldest[plural] = dropped[0]
        for w in self._watches:
            if w.plural == plural:
                event = self._event_for(w, kind, obj, old)
                if event is not None:
                    w.push(event)
        return copy.deepcopy(obj)

    def bookmark(self, plural: str) -> None:
        """Send a BOOKMARK at the current resourceVersion to watches that asked for them."""
        with self._lock:
            for w in self._watches:
                if w.plural == plural and w.bookmarks:
                    w.push(self._bookmark(w, str(self._rv)))

    def expire(self, plural: str) -> None:
        """Compact: every resourceVersion before now is too old. Open watches get the in-stream
        410 ERROR event and end; later watches/continues from an older version get 410."""
        with self._lock:
            self._oldest[plural] = self._rv
            self._history[plural].clear()
            for w in [w for w in self._watches if w.plural == plural]:
                w.push({"type": "ERROR", "object": self._too_old(plural, self._rv - 1)})
                w.push(_CLOSE)

    def forbid(self, plural: str, forbidden: bool = True) -> None:
        with self._lock:
            (self._forbidden.add if forbidden else self._forbidden.discard)(plural)

    # ---- serialization ---------------------------------------------------------------------

    def _too_old(self, plural: str, requested: int) -> dict:
        return _status(410, "Expired",
                       f"too old resource version: {requested} ({self._oldest[plural]})")

    @staticmethod
    def _typed(obj: dict, plural: str, group: str) -> dict:
        if group == "events.k8s.io":
            return {"kind": "Event", "apiVersion": "events.k8s.io/v1", **event_to_events_v1(obj)}
        g, version, kind, _ = KINDS[plural]
        return {"kind": kind, "apiVersion": f"{g}/{version}" if g else version, **obj}

    def _bookmark(self, w: _Watch, rv: str, initial_end: bool = False) -> dict:
        obj = self._typed({"metadata": {"resourceVersion": rv}}, w.plural, w.group)
        if initial_end:
            obj["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
        if w.plural == "pods":  # the zero-valued fields client-go's Pod encoding carries
            obj["spec"], obj["status"] = {"containers": None}, {}
        return {"type": "BOOKMARK", "object": obj}

    def _event_for(self, w: _Watch, kind: str, obj: dict, old: dict | None) -> dict | None:
        now = w.matches(obj)
        before = old is not None and w.matches(old)
        if kind == "MODIFIED" and now != before:
            kind = "ADDED" if now else "DELETED"
        elif kind == "DELETED":
            now = before
        if not now and not (kind == "DELETED" and before):
            return None
        return {"type": kind, "object": self._typed(obj, w.plural, w.group)}

    # ---- HTTP ------------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, str, str, str] | None:
        """path -> (group, storage plural, namespace, name), or None when not served."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = name = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not 1 <= len(rest) <= 2:
            return None
        plural = rest[0]
        name = rest[1] if len(rest) == 2 else ""
        storage = ALIASES.get((group, plural), plural)
        if storage not in KINDS:
            return None
        g, v, _, namespaced = KINDS[storage]
        if (group, plural) not in ALIASES and group != g:
            return None
        if version != ("v1" if (group, plural) in ALIASES else v):
            return None
        if namespace and not namespaced:
            return None
        return group, storage, namespace, name

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"GET {request.path_qs}")
        if self.on_request is not None:
            self.on_request(f"GET {request.path_qs}")
        auth = request.headers.get("Authorization", "")
        self.authorizations.append(auth)
        if request.path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if request.path == "/version":
            return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.2"})
        if auth and auth != f"Bearer {self.token}":
            return web.json_response(_status(401, "Unauthorized", "Unauthorized"), status=401)
        user = self.user if auth else "system:anonymous"
        route = self._route(request.path)
        if route is None:
            return web.json_response(_status(404, "NotFound", "the server could not find the "
                                             "requested resource"), status=404)
        group, plural, namespace, name = route
        q = request.query
        watching = q.get("watch") in ("1", "true")
        verb = "get" if name else ("watch" if watching else "list")
        if plural in self._forbidden:
            return web.json_response(self._forbidden_status(user, verb, group, plural,
                                                            namespace), status=403)
        try:
            labels = parse_label_selector(q.get("labelSelector", ""))
            fields = parse_field_selector(q.get("fieldSelector", ""))
        except ValueError as exc:
            return web.json_response(_status(400, "BadRequest", str(exc)), status=400)
        allowed = {"metadata.name", "metadata.namespace"} | FIELDS.get(plural, set())
        for f in fields:
            if f.field not in allowed:
                return web.json_response(_status(400, "BadRequest", f'unable to parse '
                                                 f'requirement: field label not supported: '
                                                 f'{f.field}'), status=400)
        w = _Watch(plural, group, namespace, labels, fields,
                   q.get("allowWatchBookmarks") == "true", asyncio.get_running_loop())
        if name:
            with self._lock:
                obj = self._store[plural].get(f"{namespace}/{name}" if namespace else name)
                if obj is None:
                    _, _, kind, _ = KINDS[plural]
                    return web.json_response(_status(404, "NotFound", f'{plural} "{name}" not '
                                                     f'found', {"name": name, "kind": plural}),
                                             status=404)
                return web.json_response(self._typed(obj, plural, group))
        if watching:
            return await self._watch(request, w)
        return self._list(w, q)

    def _forbidden_status(self, user: str, verb: str, group: str, plural: str,
                          namespace: str) -> dict:
        resource = f"{plural}.{group}" if group else plural
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        details = {"kind": plural, **({"group": group} if group else {})}
        return _status(403, "Forbidden", f'{resource} is forbidden: User "{user}" cannot '
                       f'{verb} resource "{plural}" in API group "{group}" {scope}', details)

    def _list(self, w: _Watch, q: Any) -> web.Response:
        limit = int(q.get("limit") or 0)
        with self._lock:
            list_rv, start = self._rv, ""
            if q.get("continue"):
                try:
                    token = json.loads(base64.urlsafe_b64decode(q["continue"]))
                    list_rv, start = int(token["rv"]), token["start"]
                except (ValueError, KeyError, TypeError):
                    return web.json_response(_status(400, "BadRequest", "continue key is not "
                                                     "valid"), status=400)
                if list_rv < self._oldest[w.plural]:
                    return web.json_response(_status(
                        410, "Expired", "The provided continue parameter is too old to display "
                        "a consistent list result. You can start a new list without the "
                        "continue parameter, or use the continue token in this response to "
                        "retrieve the remainder of the results."), status=410)
            rv_param = q.get("resourceVersion", "")
            if (q.get("resourceVersionMatch") == "Exact" and rv_param
                    and int(rv_param) < self._oldest[w.plural]):
                return web.json_response(self._too_old(w.plural, int(rv_param)), status=410)
            keys = sorted(k for k in self._store[w.plural] if k > start)
            items, last = [], ""
            for k in keys:
                obj = self._store[w.plural][k]
                if not w.matches(obj):
                    continue
                if limit and len(items) == limit:
                    break
                items.append(obj if w.group != "events.k8s.io" else event_to_events_v1(obj))
                last = k
            remaining = sum(1 for k in keys if k > last and w.matches(self._store[w.plural][k]))
            meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
            if limit and remaining:
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"rv": list_rv, "start": last}).encode()).decode()
                meta["remainingItemCount"] = remaining
            g, v, kind, _ = KINDS[w.plural]
            api_version = f"{g}/{v}" if g else v
            if w.group == "events.k8s.io":
                api_version = "events.k8s.io/v1"
            body = {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta,
                    "items": items}
            return web.Response(text=json.dumps(body), content_type="application/json")

    async def _watch(self, request: web.Request, w: _Watch) -> web.StreamResponse:
        q = request.query
        rv_param = q.get("resourceVersion", "")
        initial = q.get("sendInitialEvents") == "true"
        if initial and (q.get("resourceVersionMatch") != "NotOlderThan" or not w.bookmarks):
            return web.json_response(_status(422, "Invalid", "sendInitialEvents requires "
                                             "resourceVersionMatch=NotOlderThan and "
                                             "allowWatchBookmarks=true"), status=422)
        timeout = float(q.get("timeoutSeconds") or 1800)
        with self._lock:
            replay: list[Any] = []
            if rv_param in ("", "0") or initial:
                for _, obj in sorted(self._store[w.plural].items()):
                    if w.matches(obj):
                        replay.append({"type": "ADDED", "object": self._typed(obj, w.plural,
                                                                              w.group)})
                if initial:
                    replay.append(self._bookmark(w, str(self._rv), initial_end=True))
            else:
                try:
                    since = int(rv_param)
                except ValueError:
                    return web.json_response(_status(400, "BadRequest", f"invalid resource "
                                                     f"version: {rv_param}"), status=400)
                if since < self._oldest[w.plural]:
                    replay = [{"type": "ERROR", "object": self._too_old(w.plural, since)}, _CLOSE]
                else:
                    for rv, kind, obj, old in self._history[w.plural]:
                        if rv > since and (event := self._event_for(w, kind, obj, old)):
                            replay.append(event)
            w.transport = request.transport
            self._watches.add(w)
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            for item in replay:
                w.queue.put_nowait(item)
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(w.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                if item is _CLOSE:
                    break
                await resp.write(json.dumps(item).encode() + b"\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with self._lock:
                self._watches.discard(w)
        return resp


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve recorded Kubernetes objects as a fake "
                                                 "Kubernetes API server.")
    parser.add_argument("--data", type=Path, required=True,
                        help="directory of <plural>.json lists (../shared/data/kubernetes)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for it here")
    args = parser.parse_args()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    api = FakeKubeAPI(args.port)
    api.load_recorded(args.data)
    api.start()
    if args.kubeconfig:
        api.write_kubeconfig(args.kubeconfig)
    print(f"fake Kubernetes API at {api.url} (resourceVersion {api.resource_version})",
          flush=True)
    done.wait()
    api.stop()


if __name__ == "__main__":
    main()
