"""Certificate rotation without a restart: `reload_interval` swaps the server certificate and
`client_ca_file_reload` the trusted client CAs, for new connections, on both OTLP listeners;
a broken file keeps the previous certificates in use."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.component import ComponentID
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from receivers.otlp.common import Ingest
from receivers.otlp.config import GrpcConfig, HttpConfig
from receivers.otlp.grpc import OtlpGrpcServer
from receivers.otlp.http import OtlpHttpServer
from receivers.otlp.tls_config import TlsServerConfig
from tests.receivers.otlp.certs import Pki, make_pki


class _Sink:
    async def consume(self, payload: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _replace(src: Path, dst: Path) -> None:
    """Atomically, as a Kubernetes Secret update does (new inode)."""
    tmp = dst.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _served_serial(port: int, pki: Pki, alpn: str) -> str:
    ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
    ctx.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return str(tls.getpeercert()["serialNumber"])


async def _wait_for(check: Any, timeout: float = 6) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_server_certificate_is_reloaded(pki: Pki, tmp_path: Path, transport: str) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copyfile(pki.path("server.crt"), cert)
    shutil.copyfile(pki.path("server.key"), key)
    tls = TlsServerConfig(cert_file=str(cert), key_file=str(key), reload_interval=0.5)
    first, second = pki.serial("server"), pki.serial("server2")

    async def scenario() -> tuple[str, str, str]:
        ingest = Ingest(ComponentID("otlp"), {Signal.TRACES: _Sink()}, SelfTelemetry())
        server: Any = (OtlpGrpcServer(GrpcConfig(endpoint="127.0.0.1:0", tls=tls), ingest)
                       if transport == "grpc" else
                       OtlpHttpServer(HttpConfig(endpoint="127.0.0.1:0", tls=tls), ingest))
        alpn = "h2" if transport == "grpc" else "http/1.1"
        await server.start()
        try:
            before = await asyncio.to_thread(_served_serial, server.port, pki, alpn)
            key.write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
            await asyncio.sleep(0.7)
            broken = await asyncio.to_thread(_served_serial, server.port, pki, alpn)
            _replace(Path(pki.path("server2.crt")), cert)
            _replace(Path(pki.path("server2.key")), key)
            after = await _wait_for(lambda: (s := _served_serial(server.port, pki, alpn))
                                    != first and s)
            return before, broken, after
        finally:
            await server.stop()

    before, broken, after = asyncio.run(scenario())
    assert before == first
    assert broken == first  # the unloadable key left the old certificate in use
    assert after == second


def test_client_ca_file_is_reloaded(pki: Pki, tmp_path: Path) -> None:
    client_ca = tmp_path / "client-ca.crt"
    shutil.copyfile(pki.path("other-ca.crt"), client_ca)
    tls = TlsServerConfig(cert_file=pki.path("server.crt"), key_file=pki.path("server.key"),
                          client_ca_file=str(client_ca), client_ca_file_reload=True)

    async def status(port: int) -> int | str:
        ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
        ctx.load_cert_chain(pki.path("client.crt"), pki.path("client.key"))
        try:
            async with aiohttp.ClientSession() as session, session.post(
                    f"https://127.0.0.1:{port}/v1/traces", data=b"", ssl=ctx,
                    headers={"Content-Type": "application/x-protobuf"}) as resp:
                return resp.status
        except aiohttp.ClientError as exc:
            return type(exc).__name__

    async def scenario() -> tuple[int | str, int | str]:
        ingest = Ingest(ComponentID("otlp"), {Signal.TRACES: _Sink()}, SelfTelemetry())
        server = OtlpHttpServer(HttpConfig(endpoint="127.0.0.1:0", tls=tls), ingest)
        await server.start()
        try:
            before = await status(server.port)  # "client" is not from other-ca
            _replace(Path(pki.path("ca.crt")), client_ca)
            deadline = time.monotonic() + 6
            while (after := await status(server.port)) != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            return before, after
        finally:
            await server.stop()

    before, after = asyncio.run(scenario())
    assert before != 200
    assert after == 200
