"""Prometheus `http_config`: how a scrape (or a discovery) authenticates and talks TLS.

Field names and defaults are Prometheus's (common/config/http_config.go), so scrape configs copied
from a prometheus.yml load unchanged. Besides the models, this module turns a config into what an
aiohttp request needs: `ssl_context()` for the connector, `HTTPClient` for the per-request headers
(credentials files are read per request, as Prometheus does, so rotated secrets are picked up),
proxy choice and redirects.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import ipaddress
import os
import re
import ssl
import tempfile
import time
import urllib.parse
from typing import Annotated, Any

import aiohttp
from pydantic import (BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator,
                      model_validator)

from gateway.config.types import ComponentConfig

_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class PromConfig(ComponentConfig):
    """Prometheus configs reject unknown keys too, and are written in snake_case."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---- Prometheus's own value syntaxes (shared by the scrape and discovery configs) -------------

_PROM_UNITS = (("y", 365 * 86400_000), ("w", 7 * 86400_000), ("d", 86400_000),
               ("h", 3600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_PROM_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?"
                            r"(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_prom_duration(value: Any) -> float:
    """Prometheus's duration syntax (`1d`, `1h30m`, `5m`, `10s`, `500ms`, `0`) → seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 0:
            return 0.0
        raise ValueError(f"not a valid duration: {value!r} (write it with a unit, e.g. "
                         f"'{value}s')")
    if not isinstance(value, str):
        raise ValueError(f"a duration like '30s' or '1m' is expected, got {type(value).__name__}")
    text = value.strip()
    if text == "0":
        return 0.0
    match = _PROM_DURATION.match(text)
    if not text or not match:
        raise ValueError(f"not a valid duration string: {value!r} (Prometheus durations are "
                         f"whole numbers with units y, w, d, h, m, s, ms, e.g. '1h30m', '15s')")
    ms = sum(int(g) * mult for g, (_, mult) in zip(match.groups(), _PROM_UNITS) if g)
    return ms / 1000.0


def format_prom_duration(seconds: float) -> str:
    """As Prometheus prints a duration (model.Duration.String): `1m`, `1m30s`, `500ms`, `0s`."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    out = ""
    for unit, mult in _PROM_UNITS:
        if unit in ("y", "w") and ms % mult:
            continue  # 90d reads better than 12w6d
        if ms >= mult:
            out += f"{ms // mult}{unit}"
            ms %= mult
    return out


PromDuration = Annotated[float, BeforeValidator(parse_prom_duration),
                         PlainSerializer(format_prom_duration, return_type=str)]
"""Seconds; written in YAML the Prometheus way ('30s', '1m', '1h30m')."""

_SIZE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40,
               "pb": 1 << 50, "eb": 1 << 60, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
               "tib": 1 << 40, "pib": 1 << 50, "eib": 1 << 60}
_SIZE_PART = re.compile(r"(\d+(?:\.\d+)?)([a-zA-Z]+)")


def parse_size(value: Any) -> int:
    """Prometheus's base-2 byte sizes (`10MB` = 10 MiB, `512KiB`, `0`); a bare integer is bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"a size like '10MB' is expected, got {type(value).__name__}")
    text = value.strip()
    if text == "0":
        return 0
    total, pos = 0.0, 0
    for match in _SIZE_PART.finditer(text):
        unit = _SIZE_UNITS.get(match.group(2).lower())
        if match.start() != pos or unit is None:
            break
        total += float(match.group(1)) * unit
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid size {value!r}: use a number with a unit such as B, KB, MB, "
                         f"GB (base 2, as Prometheus: 1KB = 1024 bytes) or KiB, MiB, GiB")
    return int(total)


ByteSize = Annotated[int, BeforeValidator(parse_size)]
"""Bytes; written in YAML as Prometheus does ('10MB', '1GiB')."""


def _no_ref(value: str, what: str) -> str:
    if value:
        raise ValueError(f"{what} (secret references) is not supported: use the inline value or "
                         f"the *_file form")
    return value


class BasicAuth(PromConfig):
    username: str = Field("", description="User name.")
    username_file: str = Field("", description="File holding the user name.")
    username_ref: str = Field("", description="Not supported (secret manager reference).")
    password: str = Field("", description="Password (never logged).")
    password_file: str = Field("", description="File holding the password, read per request.")
    password_ref: str = Field("", description="Not supported (secret manager reference).")

    @model_validator(mode="after")
    def _check(self) -> BasicAuth:
        _no_ref(self.username_ref, "username_ref")
        _no_ref(self.password_ref, "password_ref")
        if self.username and self.username_file:
            raise ValueError("at most one of basic_auth username and username_file may be set")
        if self.password and self.password_file:
            raise ValueError("at most one of basic_auth password and password_file may be set")
        return self


class Authorization(PromConfig):
    type: str = Field("Bearer", description="Authorization scheme.")
    credentials: str = Field("", description="Credentials (never logged).")
    credentials_file: str = Field("", description="File holding the credentials, read per request.")
    credentials_ref: str = Field("", description="Not supported (secret manager reference).")

    @model_validator(mode="after")
    def _check(self) -> Authorization:
        _no_ref(self.credentials_ref, "credentials_ref")
        if self.credentials and self.credentials_file:
            raise ValueError("at most one of authorization credentials and credentials_file "
                             "may be set")
        if self.type.strip().lower() == "basic":
            raise ValueError("authorization type cannot be set to 'basic': use basic_auth")
        return self


class TLSConfig(PromConfig):
    ca_file: str = Field("", description="CA certificate(s) to verify the server with.")
    ca: str = Field("", description="CA certificate(s), inline PEM.")
    ca_ref: str = Field("", description="Not supported (secret manager reference).")
    cert_file: str = Field("", description="Client certificate for mTLS.")
    cert: str = Field("", description="Client certificate, inline PEM.")
    cert_ref: str = Field("", description="Not supported (secret manager reference).")
    key_file: str = Field("", description="Client key for mTLS.")
    key: str = Field("", description="Client key, inline PEM (never logged).")
    key_ref: str = Field("", description="Not supported (secret manager reference).")
    server_name: str = Field("", description="Expected server name (SNI and verification).")
    insecure_skip_verify: bool = Field(False, description="Do not verify the server certificate.")
    min_version: str = Field("", description="Lowest TLS version: TLS10, TLS11, TLS12, TLS13.")
    max_version: str = Field("", description="Highest TLS version.")

    @model_validator(mode="after")
    def _check(self) -> TLSConfig:
        for ref in ("ca_ref", "cert_ref", "key_ref"):
            _no_ref(getattr(self, ref), ref)
        for inline, file in (("ca", "ca_file"), ("cert", "cert_file"), ("key", "key_file")):
            if getattr(self, inline) and getattr(self, file):
                raise ValueError(f"at most one of {inline} and {file} must be configured")
        has_cert, has_key = bool(self.cert or self.cert_file), bool(self.key or self.key_file)
        if has_cert != has_key:
            raise ValueError("exactly one of key and key_file must be configured when a client "
                             "certificate is configured" if has_cert else
                             "exactly one of cert and cert_file must be configured when a "
                             "client key is configured")
        for name in ("min_version", "max_version"):
            value = getattr(self, name)
            if value and value not in _TLS_VERSIONS:
                raise ValueError(f"unknown TLS version {value!r} for {name}: use one of "
                                 f"{', '.join(_TLS_VERSIONS)}")
        return self


class OAuth2(PromConfig):
    client_id: str = Field("", description="OAuth2 client id.")
    client_secret: str = Field("", description="Client secret (never logged).")
    client_secret_file: str = Field("", description="File holding the client secret.")
    client_secret_ref: str = Field("", description="Not supported (secret manager reference).")
    scopes: list[str] = Field(default_factory=list, description="Scopes to request.")
    token_url: str = Field(..., description="Token endpoint (client credentials grant).")
    endpoint_params: dict[str, str] = Field(default_factory=dict,
                                            description="Extra form parameters for the token "
                                                        "request.")
    tls_config: TLSConfig = Field(default_factory=TLSConfig,
                                  description="TLS for the token endpoint.")
    proxy_url: str = Field("", description="Proxy for the token endpoint.")

    @model_validator(mode="after")
    def _check(self) -> OAuth2:
        _no_ref(self.client_secret_ref, "client_secret_ref")
        if self.client_secret and self.client_secret_file:
            raise ValueError("at most one of oauth2 client_secret and client_secret_file may be "
                             "set")
        return self


class Header(PromConfig):
    values: list[str] = Field(default_factory=list, description="Header values.")
    secrets: list[str] = Field(default_factory=list, description="Header values not logged.")
    files: list[str] = Field(default_factory=list, description="Files whose contents are values, "
                                                               "read per request.")


# Headers the scraper sets itself; Prometheus refuses them in http_headers.
_RESERVED_HEADERS = {"authorization", "host", "content-encoding", "content-length",
                     "content-type", "user-agent", "connection", "keep-alive",
                     "proxy-authenticate", "proxy-authorization", "www-authenticate",
                     "accept-encoding", "x-prometheus-remote-write-version",
                     "x-prometheus-remote-read-version", "x-prometheus-scrape-timeout-seconds",
                     "x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
                     "upgrade", "te", "trailer", "transfer-encoding"}


class HTTPClientConfig(PromConfig):
    basic_auth: BasicAuth | None = Field(None, description="HTTP basic authentication.")
    authorization: Authorization | None = Field(None, description="Authorization header.")
    oauth2: OAuth2 | None = Field(None, description="OAuth2 client credentials flow.")
    bearer_token: str = Field("", description="Deprecated form of authorization.credentials.")
    bearer_token_file: str = Field("", description="Deprecated form of "
                                                   "authorization.credentials_file.")
    tls_config: TLSConfig = Field(default_factory=TLSConfig, description="TLS settings.")
    proxy_url: str = Field("", description="HTTP proxy to go through.")
    no_proxy: str = Field("", description="Comma-separated hosts, domains and CIDRs that bypass "
                                          "proxy_url.")
    proxy_from_environment: bool = Field(False, description="Use HTTP_PROXY / HTTPS_PROXY / "
                                                            "NO_PROXY from the environment.")
    proxy_connect_header: dict[str, list[str]] = Field(
        default_factory=dict, description="Headers sent to the proxy on CONNECT.")
    http_headers: dict[str, Header] = Field(default_factory=dict,
                                            description="Extra request headers.")
    follow_redirects: bool = Field(True, description="Follow HTTP 3xx redirects.")
    enable_http2: bool = Field(True, description="Accepted for compatibility (HTTP/1.1 is used).")

    @field_validator("http_headers")
    @classmethod
    def _headers(cls, value: dict[str, Header]) -> dict[str, Header]:
        for name in value:
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"setting header {name!r} is not allowed")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> HTTPClientConfig:
        given = [n for n, v in (("basic_auth", self.basic_auth),
                                ("authorization", self.authorization),
                                ("oauth2", self.oauth2),
                                ("bearer_token", self.bearer_token),
                                ("bearer_token_file", self.bearer_token_file)) if v]
        if len(given) > 1:
            raise ValueError(f"at most one of basic_auth, oauth2, authorization, bearer_token, "
                             f"bearer_token_file may be configured (got {', '.join(given)})")
        if self.proxy_from_environment and (self.proxy_url or self.no_proxy):
            raise ValueError("if proxy_from_environment is configured, proxy_url and no_proxy "
                             "must not be configured")
        if self.no_proxy and not self.proxy_url:
            raise ValueError("if no_proxy is configured, proxy_url must also be configured")
        if self.proxy_connect_header and not (self.proxy_url or self.proxy_from_environment):
            raise ValueError("if proxy_connect_header is configured, proxy_url or "
                             "proxy_from_environment must also be configured")
        for name in ("proxy_url", *(["token_url"] if self.oauth2 else [])):
            url = getattr(self.oauth2 if name == "token_url" else self, name)
            if url and not urllib.parse.urlsplit(url).scheme:
                raise ValueError(f"{name} {url!r} is not an absolute URL")
        # Files the client needs from the start are checked now, as the Collector does.
        tls = self.tls_config
        for where, path in (("tls_config.ca_file", tls.ca_file),
                            ("tls_config.cert_file", tls.cert_file),
                            ("tls_config.key_file", tls.key_file),
                            ("authorization.credentials_file",
                             self.authorization.credentials_file if self.authorization else "")):
            if path and not os.path.isfile(path):
                raise ValueError(f"{where} {path!r} does not exist")
        return self


# ---- turning a config into requests ----------------------------------------------------------


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """An SSL context for aiohttp's connector. Raises OSError / ssl.SSLError when a file is
    missing or invalid (callers turn that into a start-up or scrape error)."""
    ctx = ssl.create_default_context(cafile=tls.ca_file or None, cadata=tls.ca or None)
    if tls.cert_file or tls.cert:
        _load_cert(ctx, tls)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.min_version:
        ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
    else:  # Prometheus's default floor
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.max_version:
        ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
    return ctx


def _load_cert(ctx: ssl.SSLContext, tls: TLSConfig) -> None:
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        return
    # ssl only loads certificates from files: inline PEM goes through a private temp dir.
    with tempfile.TemporaryDirectory(prefix="otelgw-tls-") as tmp:
        cert, key = tls.cert_file, tls.key_file
        if tls.cert:
            cert = os.path.join(tmp, "cert.pem")
            with open(cert, "w", encoding="utf-8") as f:
                f.write(tls.cert)
        if tls.key:
            key = os.path.join(tmp, "key.pem")
            fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(tls.key)
        ctx.load_cert_chain(cert, key)


def _header_values(header: Header) -> list[str]:
    return [*header.values, *header.secrets, *(_read(p) for p in header.files)]


def _bypasses_proxy(host: str, no_proxy: str) -> bool:
    for entry in (e.strip() for e in no_proxy.split(",")):
        if not entry:
            continue
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
            continue
        except ValueError:
            pass
        entry = entry.lstrip("*").lstrip(".") if entry.startswith(("*.", ".")) else entry
        if host == entry or host.endswith("." + entry) or fnmatch.fnmatch(host, entry):
            return True
    return False


class _TokenSource:
    """OAuth2 client credentials: a cached access token, fetched again shortly before expiry."""

    def __init__(self, cfg: OAuth2) -> None:
        self.cfg = cfg
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def token(self, session: aiohttp.ClientSession) -> str:
        async with self._lock:
            if self._token and time.monotonic() < self._expires - 10:
                return self._token
            secret = (_read(self.cfg.client_secret_file) if self.cfg.client_secret_file
                      else self.cfg.client_secret)
            form = {"grant_type": "client_credentials", **self.cfg.endpoint_params}
            if self.cfg.scopes:
                form["scope"] = " ".join(self.cfg.scopes)
            auth = aiohttp.BasicAuth(urllib.parse.quote(self.cfg.client_id, safe=""),
                                     urllib.parse.quote(secret, safe=""))
            ssl_ctx = ssl_context(self.cfg.tls_config)
            async with session.post(self.cfg.token_url, data=form, auth=auth, ssl=ssl_ctx,
                                    proxy=self.cfg.proxy_url or None) as resp:
                body: Any = await resp.json(content_type=None)
                if resp.status != 200 or not isinstance(body, dict) or \
                        not body.get("access_token"):
                    raise aiohttp.ClientError(
                        f"oauth2: cannot fetch a token from {self.cfg.token_url}: HTTP "
                        f"{resp.status} {str(body)[:200]}")
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + float(body.get("expires_in") or 3600)
            return self._token


class HTTPClient:
    """What one scrape config (or SD config) sends with every request: credentials, extra
    headers, proxy, redirects, TLS. One aiohttp session, created on first use."""

    def __init__(self, cfg: HTTPClientConfig, user_agent: str = "otelgw") -> None:
        self.cfg = cfg
        self.user_agent = user_agent
        self.ssl = ssl_context(cfg.tls_config)
        self._oauth = _TokenSource(cfg.oauth2) if cfg.oauth2 else None
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl, limit=0, force_close=False),
                trust_env=self.cfg.proxy_from_environment, auto_decompress=True,
                headers={"User-Agent": self.user_agent})
        return self._session

    async def headers(self) -> dict[str, str]:
        """Authorization and http_headers for one request (files are read now)."""
        cfg = self.cfg
        out: dict[str, str] = {}
        for name, header in cfg.http_headers.items():
            values = _header_values(header)
            if values:
                out[name] = ", ".join(values)
        if cfg.basic_auth is not None:
            ba = cfg.basic_auth
            user = _read(ba.username_file) if ba.username_file else ba.username
            password = _read(ba.password_file) if ba.password_file else ba.password
            raw = f"{user}:{password}".encode()
            out["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif cfg.authorization is not None:
            au = cfg.authorization
            cred = _read(au.credentials_file) if au.credentials_file else au.credentials
            out["Authorization"] = f"{au.type or 'Bearer'} {cred}".rstrip()
        elif cfg.bearer_token or cfg.bearer_token_file:
            cred = _read(cfg.bearer_token_file) if cfg.bearer_token_file else cfg.bearer_token
            out["Authorization"] = f"Bearer {cred}"
        elif self._oauth is not None:
            out["Authorization"] = f"Bearer {await self._oauth.token(self.session)}"
        return out

    def request_options(self, url: str) -> dict[str, Any]:
        """Keyword arguments for `session.get(url, ...)`: proxy, redirects, server name."""
        cfg = self.cfg
        opts: dict[str, Any] = {"allow_redirects": cfg.follow_redirects}
        if cfg.proxy_url:
            host = urllib.parse.urlsplit(url).hostname or ""
            if not _bypasses_proxy(host, cfg.no_proxy):
                opts["proxy"] = cfg.proxy_url
                if cfg.proxy_connect_header:
                    opts["proxy_headers"] = {k: ", ".join(v)
                                             for k, v in cfg.proxy_connect_header.items()}
        if cfg.tls_config.server_name:
            opts["server_hostname"] = cfg.tls_config.server_name
        return opts

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
