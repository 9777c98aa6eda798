"""Informer: a local cache of one kind of Kubernetes object kept current by list + watch.

Semantics of client-go's reflector:
- list (paged) → apply → watch from the list's resourceVersion with bookmarks;
- a watch that ends (server timeout, dropped connection, API server restart) resumes from the
  last resourceVersion seen — events or BOOKMARKs — so nothing is missed and nothing is relisted;
- 410 Gone (that version was compacted away) → relist, and the new list is diffed against the
  cache: vanished keys → on_delete, changed → on_update, new → on_add;
- failures back off exponentially with jitter (capped at 30 s); an error is logged once when it
  first appears or changes, not on every retry; 403 keeps `last_error` set to the RBAC message
  and retries at the cap.

Every object goes through `transform` as it arrives, and only its result is kept: a caller that
needs five fields of a pod stores five fields, not the whole pod (managedFields, status, spec).
Callbacks run on the event loop; an exception in one is logged and does not stop the informer.
When a MODIFIED object transforms to a value equal to the cached one, no on_update is called —
status churn that the caller does not keep costs nothing downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from gateway.kube.client import KubeClient, KubeError, KubeForbidden, KubeGone
from gateway.kube.resources import Resource

T = TypeVar("T")
log = logging.getLogger("otelgw.kube")

BACKOFF_INITIAL = 0.8
BACKOFF_CAP = 30.0
WATCH_TIMEOUT = (300, 600)
"""A watch asks the server to end it after a random 5–10 minutes, like client-go, so that
watches of many informers do not all reconnect at once."""


def _identity(obj: dict) -> Any:
    return obj


def object_key(obj: dict) -> str:
    """"namespace/name", or "name" for cluster-scoped objects (client-go's MetaNamespaceKey)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


class _Backoff:
    def __init__(self, initial: float = BACKOFF_INITIAL, cap: float = BACKOFF_CAP) -> None:
        self.initial, self.cap, self.current = initial, cap, 0.0

    def next(self) -> float:
        self.current = min(self.cap, self.current * 2 if self.current else self.initial)
        return self.current * random.uniform(0.8, 1.2)  # jitter: spread reconnecting clients

    def reset(self) -> None:
        self.current = 0.0


class Informer(Generic[T]):
    def __init__(self, client: KubeClient, resource: Resource, *, namespace: str | None = None,
                 label_selector: str = "", field_selector: str = "",
                 transform: Callable[[dict], T | None] = _identity,
                 on_add: Callable[[str, T], None] | None = None,
                 on_update: Callable[[str, T, T], None] | None = None,
                 on_delete: Callable[[str, T], None] | None = None,
                 name: str = "") -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace or None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete
        self.name = name or f"{resource}{'/' + namespace if namespace else ''}"
        self.items: dict[str, T] = {}
        self.synced = False
        self.last_error: str | None = None
        self.resource_version = ""
        """The last resourceVersion seen (list, event or bookmark); a resumed watch starts here."""
        self.lists = 0
        """How many lists were applied (1 + relists after 410)."""
        self._synced_event = asyncio.Event()
        self._task: asyncio.Task | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer {self.name}")

    async def wait_synced(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced_event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # ---- the reflector loop ----------------------------------------------------------------

    async def _run(self) -> None:
        backoff = _Backoff(BACKOFF_INITIAL, BACKOFF_CAP)
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list_and_apply()
                    need_list = False
                    self._recovered()
                    backoff.reset()
                started = time.monotonic()
                events = await self._watch_once()
                self._recovered()
                if events or time.monotonic() - started > 1.0:
                    backoff.reset()
                    continue
                # A watch that ends at once without events (a proxy closing idle streams):
                # do not spin.
                await asyncio.sleep(backoff.next())
            except asyncio.CancelledError:
                raise
            except KubeGone as exc:
                if need_list:  # the list itself expired: retry it, but not in a tight loop
                    self._failed(str(exc))
                    await asyncio.sleep(backoff.next())
                else:
                    log.info("%s: %s; relisting", self.name, exc)
                    need_list = True
            except KubeForbidden as exc:
                self._failed(str(exc))
                backoff.current = backoff.cap
                await asyncio.sleep(backoff.next())
            except KubeError as exc:
                self._failed(str(exc))
                await asyncio.sleep(backoff.next())
            except Exception as exc:  # a bug must not end the cache silently
                message = f"unexpected error: {exc!r}"
                if message != self.last_error:
                    log.exception("%s: %s", self.name, message)
                self.last_error = message
                await asyncio.sleep(backoff.next())

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s: %s (retrying with backoff)", self.name, message)
        self.last_error = message

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.info("%s: recovered after: %s", self.name, self.last_error)
            self.last_error = None

    async def _list_and_apply(self) -> None:
        fresh: dict[str, T] = {}
        list_rv = ""
        async for page, rv, restarted in self.client.list_pages(
                self.resource, namespace=self.namespace, label_selector=self.label_selector,
                field_selector=self.field_selector):
            if restarted:
                fresh.clear()
            list_rv = rv or list_rv
            with _gc_paused():  # see client._decode: transforms allocate without cycles too
                for obj in page:
                    value = self._transform(obj)
                    if value is not None:
                        fresh[object_key(obj)] = value
            del page  # the raw page can go now: only transformed values are kept
        old, self.items = self.items, fresh
        self.resource_version = list_rv
        self.lists += 1
        for key, value in fresh.items():
            if key not in old:
                self._call(self.on_add, key, value)
            elif not _same(old[key], value):
                self._call(self.on_update, key, old[key], value)
        for key, value in old.items():
            if key not in fresh:
                self._call(self.on_delete, key, value)
        if not self.synced:
            self.synced = True
            self._synced_event.set()

    async def _watch_once(self) -> int:
        events = 0
        stream = self.client.watch(
            self.resource, resource_version=self.resource_version, namespace=self.namespace,
            label_selector=self.label_selector, field_selector=self.field_selector,
            timeout_seconds=random.randint(*WATCH_TIMEOUT), allow_bookmarks=True)
        async for event in stream:
            events += 1
            self._apply(event)
        return events

    def _apply(self, event: dict) -> None:
        kind, obj = event.get("type"), event["object"]
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = str(rv)
            return
        key = object_key(obj)
        if kind in ("ADDED", "MODIFIED"):
            value = self._transform(obj)
            old = self.items.get(key)
            if value is None:  # no longer of interest: as if deleted
                if old is not None:
                    del self.items[key]
                    self._call(self.on_delete, key, old)
            elif old is None:
                self.items[key] = value
                self._call(self.on_add, key, value)
            else:
                self.items[key] = value
                if not _same(old, value):
                    self._call(self.on_update, key, old, value)
        elif kind == "DELETED":
            old = self.items.pop(key, None)
            if old is not None:
                self._call(self.on_delete, key, old)
        if rv:
            self.resource_version = str(rv)

    def _transform(self, obj: dict) -> T | None:
        try:
            return self.transform(obj)
        except Exception:  # one odd object must not stop the cache
            log.exception("%s: transform failed for %s", self.name, object_key(obj))
            return None

    def _call(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("%s: event handler failed for %s", self.name, args[0])


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False
