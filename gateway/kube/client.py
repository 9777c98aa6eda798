"""Kubernetes API client: list (paged) and watch, raw JSON, one aiohttp session.

Why this shape: kubernetes_asyncio is used for what it does well and what is easy to get wrong —
reading kubeconfig files (contexts, exec/OIDC/GCP providers, embedded or file certificates) and
the in-cluster service account (token re-read every minute, so a rotated projected token is
picked up) into a `Configuration`. Its generated API classes are not used: they deserialize every
object into model instances (several Python objects per field, for every pod of a 10k-pod
cluster) and its `Watch` helper does the same per event. The API's JSON is read here straight into
dicts that an informer's transform reduces at once, and watch streams are split into lines
directly from aiohttp's stream, with no limit on an event's size.

Errors (all KubeError, whose message names the URL and the cause):
  KubeForbidden  403: RBAC denies the verb on the resource; says which, for which identity.
  KubeGone       410: the resourceVersion asked for is no longer available; relist.
  KubeError      anything else: connection failures, 401, 5xx, unparseable bodies.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp

from gateway.kube.resources import Resource

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
USER_AGENT = "otelgw"
AUTH_TYPES = ("none", "serviceAccount", "kubeConfig", "tls")

AuthHeaders = Callable[[], Awaitable[dict[str, str]]]


class KubeError(Exception):
    """A Kubernetes API request failed; the message names the resource/URL and the cause."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeForbidden(KubeError):
    """403: the identity lacks an RBAC permission (the message names verb, resource, user)."""

    def __init__(self, message: str, *, verb: str, resource: str, user: str) -> None:
        super().__init__(message, status=403, reason="Forbidden")
        self.verb = verb
        self.resource = resource
        self.user = user


class KubeGone(KubeError):
    """410 Gone/Expired: the resourceVersion asked for is too old; the caller must relist."""


def _host_from_env() -> str:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeError("cannot find the Kubernetes API: KUBERNETES_SERVICE_HOST and "
                        "KUBERNETES_SERVICE_PORT are not set (not running in a pod?); use "
                        "auth_type kubeConfig, or give the API server address")
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def _ssl_context(ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file or None)
    if cert_file:
        ctx.load_cert_chain(cert_file, keyfile=key_file or None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _require_files(*paths: str, why: str) -> None:
    for path in paths:
        if not os.path.isfile(path):
            raise KubeError(f"{why}: {path} does not exist")


class KubeClient:
    """One connection pool to one API server. Create with `await KubeClient.create(...)`."""

    def __init__(self, base_url: str, *, ssl_context: ssl.SSLContext | bool | None = None,
                 auth_headers: AuthHeaders | None = None, server_hostname: str | None = None,
                 proxy: str | None = None, reauthenticate: Callable[[], Awaitable[None]] | None
                 = None) -> None:
        """Low-level constructor: `auth_headers` is awaited before every request (so rotating
        credentials are re-read); `reauthenticate` is awaited once after a 401 before one
        retry (exec plugins, expired tokens)."""
        self.base_url = base_url.rstrip("/")
        self._ssl = ssl_context
        self._auth_headers = auth_headers
        self._reauthenticate = reauthenticate
        self._server_hostname = server_hostname
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    async def create(cls, auth_type: str = "serviceAccount", *, kubeconfig: str | None = None,
                     context: str | None = None, api_server: str | None = None,
                     service_account_dir: str | None = None) -> KubeClient:
        """Connect the way the Collector's k8s API config does (`auth_type`):

        serviceAccount  in-cluster: KUBERNETES_SERVICE_HOST/PORT, the pod's token (re-read as it
                        rotates) and CA from the service account directory.
        kubeConfig      $KUBECONFIG or ~/.kube/config (or `kubeconfig`), its current context
                        or `context`.
        none            `api_server` (or the in-cluster address) without credentials and
                        without verifying the server certificate (tests, kubectl proxy).
        tls             client certificate tls.crt/tls.key and ca.crt from the service account
                        directory (a gateway extension; the Collector accepts the value without
                        implementing it).
        """
        sa_dir = service_account_dir or SERVICE_ACCOUNT_DIR
        if auth_type == "kubeConfig":
            return await cls._from_kubeconfig(kubeconfig, context)
        if auth_type == "serviceAccount":
            return await cls._in_cluster(sa_dir, api_server)
        if auth_type == "none":
            url = api_server or _host_from_env()
            return cls(url, ssl_context=_ssl_context(verify=False)
                       if url.startswith("https") else None)
        if auth_type == "tls":
            files = [os.path.join(sa_dir, n) for n in ("ca.crt", "tls.crt", "tls.key")]
            _require_files(*files, why="auth_type tls needs a CA and client certificate")
            return cls(api_server or _host_from_env(), ssl_context=_ssl_context(*files))
        raise KubeError(f"unknown auth_type {auth_type!r}: use one of {', '.join(AUTH_TYPES)}")

    @classmethod
    async def _in_cluster(cls, sa_dir: str, api_server: str | None) -> KubeClient:
        from kubernetes_asyncio.client import Configuration
        from kubernetes_asyncio.config.config_exception import ConfigException
        from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

        token, ca = os.path.join(sa_dir, "token"), os.path.join(sa_dir, "ca.crt")
        env = dict(os.environ)
        if api_server:  # the loader insists on the service env; the explicit address wins
            env.setdefault("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
            env.setdefault("KUBERNETES_SERVICE_PORT", "443")
        elif not env.get("KUBERNETES_SERVICE_HOST") or not env.get("KUBERNETES_SERVICE_PORT"):
            _host_from_env()  # raises with the explanation
        config = Configuration()
        try:
            InClusterConfigLoader(token_filename=token, cert_filename=ca,
                                  environ=env).load_and_set(config)
        except ConfigException as exc:
            raise KubeError(f"in-cluster (serviceAccount) configuration failed: {exc} "
                            f"(looked in {sa_dir})") from exc
        return cls._from_configuration(config, host=api_server or config.host)

    @classmethod
    async def _from_kubeconfig(cls, path: str | None, context: str | None) -> KubeClient:
        from kubernetes_asyncio.client import Configuration
        from kubernetes_asyncio.config import kube_config

        config = Configuration()
        # Resolved here, not by the library: it reads $KUBECONFIG once, at import time.
        where = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
        where = os.pathsep.join(os.path.expanduser(p) for p in where.split(os.pathsep))
        try:
            loader = await kube_config.load_kube_config(
                config_file=where, context=context, client_configuration=config,
                persist_config=False)
        except Exception as exc:  # ConfigException, YAML, missing file, bad context...
            raise KubeError(f"cannot load kubeconfig {where}"
                            f"{f' (context {context})' if context else ''}: {exc}") from exc

        async def reload() -> None:
            await loader.load_and_set(config)

        return cls._from_configuration(config, reauthenticate=reload)

    @classmethod
    def _from_configuration(cls, config: Any, *, host: str | None = None,
                            reauthenticate: Callable[[], Awaitable[None]] | None = None
                            ) -> KubeClient:
        url = host or config.host
        ctx = None
        if url.startswith("https"):
            ctx = _ssl_context(config.ssl_ca_cert, config.cert_file, config.key_file,
                               config.verify_ssl)

        async def headers() -> dict[str, str]:
            # auth_settings() runs the refresh hook: the service account token is re-read.
            auth = await config.auth_settings()
            token = auth.get("BearerToken", {}).get("value")
            if token:
                return {"Authorization": token}
            if config.username or config.password:
                return {"Authorization": config.get_basic_auth_token()}
            return {}

        return cls(url, ssl_context=ctx, auth_headers=headers,
                   server_hostname=config.tls_server_name or None, proxy=config.proxy or None,
                   reauthenticate=reauthenticate)

    # ---- requests --------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No proxy from the environment: the API server is inside the cluster (the
            # Collector disables it the same way); a kubeconfig proxy-url is honoured.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True,
                                               limit=0),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                trust_env=False)
        return self._session

    def _url(self, resource: Resource, namespace: str | None, params: dict[str, str]) -> str:
        query = urlencode({k: v for k, v in params.items() if v != ""})
        return f"{self.base_url}{resource.path(namespace)}{'?' + query if query else ''}"

    async def _open(self, url: str, resource: Resource, verb: str,
                    timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        for attempt in (0, 1):
            try:
                headers = await self._auth_headers() if self._auth_headers else {}
            except (OSError, ValueError, aiohttp.ClientError) as exc:  # a credentials file
                raise KubeError(f"{verb} {resource} ({url}): cannot read the credentials: "
                                f"{exc}") from exc
            kwargs: dict[str, Any] = {}
            if self._server_hostname:
                kwargs["server_hostname"] = self._server_hostname
            try:
                resp = await self._get_session().get(url, headers=headers, timeout=timeout,
                                                     proxy=self._proxy, **kwargs)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                raise KubeError(f"{verb} {resource} ({url}): cannot reach the API server: "
                                f"{exc or type(exc).__name__}") from exc
            if resp.status == 200:
                return resp
            body = await self._error_body(resp)
            if resp.status == 401 and attempt == 0 and self._reauthenticate is not None:
                try:
                    await self._reauthenticate()
                    continue
                except Exception:  # keep the 401 as the error the user sees
                    pass
            raise _status_error(resp.status, body, verb, resource, url)
        raise AssertionError("unreachable")

    @staticmethod
    async def _error_body(resp: aiohttp.ClientResponse) -> dict:
        try:
            text = await resp.text()
        except (aiohttp.ClientError, UnicodeDecodeError):
            text = ""
        finally:
            resp.release()
        try:
            body = json.loads(text)
            return body if isinstance(body, dict) else {"message": text[:200]}
        except ValueError:
            return {"message": text.strip()[:200] or resp.reason or ""}

    async def list_pages(self, resource: Resource, *, namespace: str | None = None,
                         label_selector: str = "", field_selector: str = "",
                         limit: int = 500) -> AsyncIterator[tuple[list[dict], str, bool]]:
        """Yield (items, list resourceVersion, restarted) page by page, so a caller can reduce
        each page before the next arrives. When a continue token expires (the snapshot was
        compacted) the list restarts unpaged, as client-go's pager does; its page comes with
        restarted=True and the caller drops what earlier pages gave."""
        cont, paged, restarted = "", limit > 0, False
        while True:
            params = {"labelSelector": label_selector, "fieldSelector": field_selector,
                      "limit": str(limit) if paged else "", "continue": cont}
            url = self._url(resource, namespace, params)
            timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=60)
            try:
                resp = await self._open(url, resource, "list", timeout)
                try:
                    body = _decode(await resp.read())
                finally:
                    resp.release()
            except KubeGone:
                if not cont:
                    raise
                cont, paged, restarted = "", False, True
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                raise KubeError(f"list {resource} ({url}): bad response: "
                                f"{exc or type(exc).__name__}") from exc
            if not isinstance(body, dict):
                raise KubeError(f"list {resource} ({url}): the response is not a list object")
            meta = body.get("metadata") or {}
            yield body.get("items") or [], str(meta.get("resourceVersion") or ""), restarted
            restarted = False
            cont = meta.get("continue") or ""
            if not cont:
                return

    async def list(self, resource: Resource, *, namespace: str | None = None,
                   label_selector: str = "", field_selector: str = "",
                   limit: int = 500) -> tuple[list[dict], str]:
        """All items, following continue tokens, and the list's resourceVersion."""
        items: list[dict] = []
        rv = ""
        async for page, page_rv, restarted in self.list_pages(
                resource, namespace=namespace, label_selector=label_selector,
                field_selector=field_selector, limit=limit):
            if restarted:
                items.clear()
            items.extend(page)
            rv = page_rv or rv
        return items, rv

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict:
        """One object by name."""
        url = f"{self.base_url}{resource.path(namespace)}/{name}"
        resp = await self._open(url, resource, "get",
                                aiohttp.ClientTimeout(sock_connect=10, sock_read=60))
        try:
            return await resp.json(loads=json.loads, content_type=None)
        except (aiohttp.ClientError, ValueError) as exc:
            raise KubeError(f"get {resource} {name} ({url}): bad response: {exc}") from exc
        finally:
            resp.release()

    async def watch(self, resource: Resource, *, resource_version: str,
                    namespace: str | None = None, label_selector: str = "",
                    field_selector: str = "", timeout_seconds: int = 300,
                    allow_bookmarks: bool = True) -> AsyncIterator[dict]:
        """Yield raw watch events {"type", "object"} until the server ends the stream (after
        `timeout_seconds`). Raises KubeGone on 410 (HTTP or an in-stream ERROR event),
        KubeForbidden on 403, KubeError when the connection drops mid-stream."""
        params = {"watch": "1", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true" if allow_bookmarks else "",
                  "timeoutSeconds": str(timeout_seconds), "labelSelector": label_selector,
                  "fieldSelector": field_selector}
        url = self._url(resource, namespace, params)
        # The server ends the stream at timeout_seconds; silence well beyond that is a dead
        # connection (a half-open TCP session after a node or proxy failure).
        timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=timeout_seconds + 30)
        resp = await self._open(url, resource, "watch", timeout)
        buf = bytearray()
        try:
            async for chunk in resp.content.iter_any():
                buf += chunk
                while (nl := buf.find(b"\n")) >= 0:
                    line = bytes(buf[:nl])
                    del buf[:nl + 1]
                    if line.strip():
                        yield _watch_event(line, resource, url)
            if buf.strip():
                yield _watch_event(bytes(buf), resource, url)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise KubeError(f"watch {resource} ({url}): stream broken: "
                            f"{exc or type(exc).__name__}") from exc
        finally:
            resp.release()

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _decode(data: bytes) -> Any:
    """json.loads with the cyclic GC paused: a list page builds ~10^5 containers that cannot
    form cycles, and with a large cache alive every collection the allocations trigger walks the
    whole heap (measured: 10k pods decoded in 0.7 s instead of 2.8 s)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(data)
    finally:
        if enabled:
            gc.enable()


def _watch_event(line: bytes, resource: Resource, url: str) -> dict:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise KubeError(f"watch {resource} ({url}): unparseable event: {exc}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise KubeError(f"watch {resource} ({url}): malformed event {line[:200]!r}")
    if event.get("type") == "ERROR":
        status = event["object"]
        raise _status_error(int(status.get("code") or 500), status, "watch", resource, url)
    return event


_USER = re.compile(r'User "([^"]*)"')


def _status_error(code: int, status: dict, verb: str, resource: Resource, url: str) -> KubeError:
    message = str(status.get("message") or "").strip()
    reason = str(status.get("reason") or "")
    if code == 403:
        m = _USER.search(message)
        user = m.group(1) if m else "the gateway's identity"
        group = f'"{resource.group}"'
        return KubeForbidden(
            f"{verb} {resource} is forbidden for {user} ({message or 'HTTP 403'}): grant it a "
            f"(Cluster)Role rule with apiGroups [{group}], resources [\"{resource.plural}\"], "
            f"verbs [\"get\", \"list\", \"watch\"]", verb=verb, resource=str(resource),
            user=user)
    if code == 410:
        return KubeGone(f"{verb} {resource} ({url}): {message or 'resource version too old'} "
                        f"(410 {reason or 'Gone'})", status=410, reason=reason)
    if code == 401:
        return KubeError(f"{verb} {resource} ({url}): 401 Unauthorized — the API server "
                         f"rejected the credentials (expired token? wrong kubeconfig user?)",
                         status=401, reason=reason)
    return KubeError(f"{verb} {resource} ({url}): HTTP {code} {reason}: {message}".rstrip(": "),
                     status=code, reason=reason)
