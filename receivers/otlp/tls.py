"""TLS on the OTLP listeners: the Collector's `configtls` server settings (tls_config.py) for
aiohttp (an ssl.SSLContext) and grpc.aio (server credentials).

As in the Collector, `client_ca_file` turns on mutual TLS: every client must present a
certificate that chains to it, or the handshake fails. `ca_file`/`ca_pem` set the trust roots a
*client* would use; a server has no use for them (the Collector ignores them too), so they are
accepted and a warning says so.

Certificates are loaded (and the key checked against the certificate) when the listener
starts, so a missing, unreadable or mismatched file stops the gateway with the path in the
message, never at the first handshake. With `reload_interval` the certificate and key files are
checked for changes at most that often, and with `client_ca_file_reload` the client CA file
about once a second; a change takes effect for new connections. A file that fails to load
keeps the previous material in use (and is logged) rather than breaking every handshake.

What grpc.aio cannot do is refused rather than ignored where ignoring it would weaken the
connection: grpc.aio negotiates TLS 1.2 to 1.3 with no setting to narrow that range or to choose
cipher suites, so `min_version: "1.3"`, `max_version` below 1.2 or `cipher_suites` on a gRPC
listener are configuration errors; `max_version: "1.2"` (which only keeps TLS 1.3 out) is
accepted with a warning.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from receivers.otlp.tls_config import CIPHER_SUITES, TlsServerConfig

log = logging.getLogger(__name__)

_CLIENT_CA_CHECK = 1.0  # seconds between looks at client_ca_file when it reloads


@dataclass(frozen=True)
class _Material:
    cert: bytes
    key: bytes
    client_ca: bytes | None


def _no_password() -> str:
    raise ValueError("the private key is encrypted; otelgw needs an unencrypted key")


class ServerTls:
    """The loaded TLS settings of one listener (see the module docstring)."""

    def __init__(self, cfg: TlsServerConfig, where: str) -> None:
        self.cfg = cfg
        self.where = where  # config path of the tls block, for messages
        self._lock = threading.Lock()  # the gRPC fetcher runs on gRPC's own threads
        self._material = self._load()
        self._stamps = self._file_stamps()
        now = time.monotonic()
        self._next_cert_check = now + cfg.reload_interval
        self._next_ca_check = now + _CLIENT_CA_CHECK
        self._context: ssl.SSLContext | None = None
        if cfg.ca_file or cfg.ca_pem:
            log.warning("%s: ca_file/ca_pem has no effect on a server (it does not verify "
                        "clients); set client_ca_file to require client certificates", where)

    @property
    def mutual(self) -> bool:
        return self._material.client_ca is not None

    @property
    def reloads(self) -> bool:
        return self.cfg.reload_interval > 0 or self.cfg.client_ca_file_reload

    # -- loading ---------------------------------------------------------------------------

    def _read(self, key: str, path: str) -> bytes:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError([f"{self.where}::{key}: cannot read {path}: "
                               f"{exc.strerror or exc}"]) from None
        if not data.strip():
            raise ConfigError([f"{self.where}::{key}: {path} is empty"])
        return data

    def _system_cas(self) -> bytes:
        paths = ssl.get_default_verify_paths()
        for path in (paths.cafile, paths.openssl_cafile):
            if path and os.path.isfile(path):
                return Path(path).read_bytes()
        return b""

    def _load(self) -> _Material:
        cfg = self.cfg
        cert = self._read("cert_file", cfg.cert_file) if cfg.cert_file else cfg.cert_pem.encode()
        key = (self._read("key_file", cfg.key_file) if cfg.key_file
               else cfg.key_pem.get_secret_value().encode())
        client_ca = self._read("client_ca_file", cfg.client_ca_file) if cfg.client_ca_file else None
        if client_ca is not None and cfg.include_system_ca_certs_pool:
            client_ca = client_ca.rstrip() + b"\n" + self._system_cas()
        material = _Material(cert, key, client_ca)
        self._build_context(material)  # checks the key against the certificate, the CA PEM
        return material

    def _build_context(self, m: _Material) -> ssl.SSLContext:
        """An SSLContext with the material; ConfigError naming the file that is wrong."""
        cfg = self.cfg
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version, high = cfg.tls_versions()
        if high is not None:
            ctx.maximum_version = high
        ciphers = [CIPHER_SUITES[s] for s in cfg.cipher_suites if CIPHER_SUITES[s]]
        if ciphers:
            ctx.set_ciphers(":".join(ciphers))
        cert_key, cert_src = ("cert_file", cfg.cert_file) if cfg.cert_file else ("cert_pem", "")
        key_key, key_src = ("key_file", cfg.key_file) if cfg.key_file else ("key_pem", "")
        cert_at, key_at = f"{self.where}::{cert_key}", f"{self.where}::{key_key}"
        if b"-----BEGIN" not in m.cert or b"CERTIFICATE-----" not in m.cert:
            raise ConfigError([f"{cert_at}: {cert_src or 'the value'} holds no PEM certificate"])
        if b"PRIVATE KEY-----" not in m.key:
            raise ConfigError([f"{key_at}: {key_src or 'the value'} holds no PEM private key"])
        # ssl loads a certificate chain from files only: a private directory, removed at once
        with tempfile.TemporaryDirectory(prefix="otelgw-tls-", dir=_private_tmp()) as tmp:
            cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            for path, data in ((cert_path, m.cert), (key_path, m.key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            try:
                ctx.load_cert_chain(cert_path, key_path, password=_no_password)
            except ValueError as exc:
                raise ConfigError([f"{key_at}: {key_src or 'the key'}: {exc}"]) from None
            except ssl.SSLError as exc:
                if exc.reason == "KEY_VALUES_MISMATCH":
                    why = f"{key_src or 'the key'} is not the private key of the certificate"
                else:
                    why = f"cannot load the certificate and key: {exc.reason or exc}"
                raise ConfigError([f"{key_at}: {why}"]) from None
        if m.client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            try:
                ctx.load_verify_locations(cadata=m.client_ca.decode("ascii", "replace"))
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigError([f"{self.where}::client_ca_file: cannot load the CA "
                                   f"certificates of {cfg.client_ca_file}: {exc}"]) from None
        return ctx

    def _file_stamps(self) -> dict[str, tuple[int, int, int]]:
        cfg = self.cfg
        files = [cfg.cert_file, cfg.key_file] if cfg.reload_interval > 0 else []
        if cfg.client_ca_file_reload:
            files.append(cfg.client_ca_file)
        stamps = {}
        for path in filter(None, files):
            try:
                st = os.stat(path)  # follows the symlinks Kubernetes swaps on a Secret update
                stamps[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                stamps[path] = (0, 0, 0)
        return stamps

    def _maybe_reload(self) -> _Material | None:
        """New material when a watched file changed and loads; None otherwise."""
        now = time.monotonic()
        cert_due = self.cfg.reload_interval > 0 and now >= self._next_cert_check
        ca_due = self.cfg.client_ca_file_reload and now >= self._next_ca_check
        if not (cert_due or ca_due):
            return None
        with self._lock:
            if cert_due:
                self._next_cert_check = now + self.cfg.reload_interval
            if ca_due:
                self._next_ca_check = now + _CLIENT_CA_CHECK
            stamps = self._file_stamps()
            if stamps == self._stamps:
                return None
            self._stamps = stamps
            try:
                self._material = self._load()
            except ConfigError as exc:
                log.error("TLS reload failed, the previous certificates stay in use: %s",
                          "; ".join(exc.problems))
                return None
            log.info("%s: reloaded the TLS certificates", self.where)
            return self._material

    # -- aiohttp ---------------------------------------------------------------------------

    def ssl_context(self, alpn: list[str]) -> ssl.SSLContext:
        """The context for the listening socket; with reloading, each handshake switches to the
        context of the newest material (the server-name callback runs on every ClientHello,
        with or without SNI)."""
        front = self._build_context(self._material)
        front.set_alpn_protocols(alpn)
        self._context = front
        if self.reloads:
            def pick(sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
                material = self._maybe_reload()
                if material is not None:
                    try:
                        ctx = self._build_context(material)
                        ctx.set_alpn_protocols(alpn)
                        self._context = ctx
                    except ConfigError as exc:  # changed again since it loaded
                        log.error("TLS reload failed: %s", "; ".join(exc.problems))
                if self._context is not front:
                    sock.context = self._context

            front.sni_callback = pick  # type: ignore[assignment]
        return front

    # -- grpc.aio --------------------------------------------------------------------------

    def grpc_credentials(self) -> Any:
        import grpc

        def config(m: _Material) -> Any:
            return grpc.ssl_server_certificate_configuration([(m.key, m.cert)],
                                                             root_certificates=m.client_ca)

        m = self._material
        if not self.reloads:
            return grpc.ssl_server_credentials([(m.key, m.cert)], root_certificates=m.client_ca,
                                               require_client_auth=self.mutual)

        def fetch() -> Any:  # called by gRPC before each handshake; None keeps the current one
            material = self._maybe_reload()
            return None if material is None else config(material)

        return grpc.dynamic_ssl_server_credentials(config(m), fetch,
                                                   require_client_authentication=self.mutual)


def _private_tmp() -> str | None:
    """A memory-backed temporary directory when there is one, so key copies never hit a disk."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
