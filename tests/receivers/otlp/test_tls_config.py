"""`tls` and `auth` on the OTLP listeners as configuration: Collector YAML loads unchanged,
mistakes are reported with their path when the file is loaded, and files that are missing or
wrong stop the start with the path of the setting and of the file."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.component import ComponentID, Host
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from loadtests.gatewayproc import Gateway, free_port
from receivers.otlp.common import Ingest
from receivers.otlp.config import HttpConfig, OtlpConfig
from receivers.otlp.http import OtlpHttpServer
from receivers.otlp.receiver import OtlpReceiver
from tests.receivers.otlp.certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _config(grpc: dict[str, Any] | None = None, http: dict[str, Any] | None = None,
            extensions: dict[str, Any] | None = None) -> str:
    protocols = {k: v for k, v in (("grpc", grpc), ("http", http)) if v is not None}
    return yaml.safe_dump({
        "extensions": extensions or {},
        "receivers": {"otlp": {"protocols": protocols}},
        "exporters": {"prometheus": {"endpoint": "127.0.0.1:0"}},
        "service": {"extensions": list(extensions or {}), "pipelines": {"metrics": {
            "receivers": ["otlp"], "exporters": ["prometheus"]}}},
    })


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config_text(text)
    return err.value.problems


def test_collector_yaml_loads_unchanged() -> None:
    cfg = load_config_text(_config(
        grpc={"endpoint": "0.0.0.0:4317", "max_concurrent_streams": 16,
              "tls": {"cert_file": "/certs/tls.crt", "key_file": "/certs/tls.key",
                      "client_ca_file": "/certs/ca.crt", "client_ca_file_reload": True,
                      "reload_interval": "1h", "min_version": "1.2"},
              "auth": {"authenticator": "bearertokenauth"}},
        http={"endpoint": "0.0.0.0:4318",
              "tls": {"cert_file": "/certs/tls.crt", "key_file": "/certs/tls.key",
                      "min_version": "1.3", "max_version": "1.3",
                      "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]},
              "auth": {"authenticator": "bearertokenauth/other", "request_params": ["token"]}},
        extensions={"bearertokenauth": {"token": "${env:OTLP_TOKEN}"},
                    "bearertokenauth/other": {"scheme": "", "header": "X-Api-Key",
                                              "filename": "/secrets/tokens"}}),
        env={"OTLP_TOKEN": "s3cret"})
    otlp = cfg.receivers[ComponentID("otlp")].config
    assert isinstance(otlp, OtlpConfig)
    assert otlp.protocols.grpc is not None and otlp.protocols.grpc.tls is not None
    assert otlp.protocols.grpc.tls.reload_interval == 3600
    assert otlp.protocols.grpc.max_concurrent_requests == 1024  # otelgw's default
    ext = cfg.extensions[ComponentID("bearertokenauth")].config
    assert ext.token.get_secret_value() == "s3cret"  # type: ignore[attr-defined]
    assert "s3cret" not in repr(ext)


CERT = {"cert_file": "/c.crt", "key_file": "/c.key"}


@pytest.mark.parametrize("grpc, http, expected", [
    (None, {"tls": {"cert_file": "/c.crt"}},
     "receivers::otlp::protocols::http::tls: provide both a certificate (cert_file) and its key "
     "(key_file), or neither"),
    (None, {"tls": {}}, "receivers::otlp::protocols::http::tls: a TLS server needs a certificate"),
    (None, {"tls": {**CERT, "min_version": "1.4"}},
     "receivers::otlp::protocols::http::tls::min_version: unsupported TLS version '1.4'"),
    (None, {"tls": {**CERT, "min_version": "1.3", "max_version": "1.2"}},
     "receivers::otlp::protocols::http::tls: min_version cannot be greater than max_version"),
    (None, {"tls": {**CERT, "cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}},
     "receivers::otlp::protocols::http::tls::cipher_suites: invalid TLS cipher suite(s) "
     "'TLS_RSA_WITH_RC4_128_SHA'"),
    (None, {"tls": {**CERT, "curve_preferences": ["X25519"]}},
     "receivers::otlp::protocols::http::tls::curve_preferences: curve_preferences is not "
     "supported"),
    ({"tls": {**CERT, "min_version": "1.3"}}, None,
     "receivers::otlp::protocols::grpc: tls: min_version 1.3 cannot be enforced on the gRPC "
     "listener"),
    ({"tls": {**CERT, "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]}}, None,
     "receivers::otlp::protocols::grpc: tls: cipher_suites cannot be set on the gRPC listener"),
    ({"auth": {"authenticator": "not an id"}}, None,
     "receivers::otlp::protocols::grpc::auth::authenticator: invalid component id"),
    ({"auth": {}}, None, "receivers::otlp::protocols::grpc::auth::authenticator: Field required"),
    ({"max_concurrent_requests": -1}, None,
     "receivers::otlp::protocols::grpc::max_concurrent_requests: Input should be greater than "
     "or equal to 0"),
])
def test_mistakes_are_reported_at_load(grpc: Any, http: Any, expected: str) -> None:
    problems = _problems(_config(grpc, http))
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize("body, expected", [
    ({}, "extensions::bearertokenauth: no bearer token provided: set token, tokens or filename"),
    ({"token": "a", "tokens": ["b"]},
     "extensions::bearertokenauth: either tokens or token should be provided, not both"),
    ({"tokens": ["a", " "]}, "extensions::bearertokenauth: tokens: an empty token would let "
                             "anyone in"),
])
def test_bearertokenauth_mistakes(body: dict[str, Any], expected: str) -> None:
    problems = _problems(_config(http={}, extensions={"bearertokenauth": body}))
    assert expected in problems, problems


# -- at start ------------------------------------------------------------------------------


class _Sink:
    async def consume(self, payload: Any) -> None:
        pass


def _start(http: dict[str, Any] | None = None, grpc: dict[str, Any] | None = None,
           extensions: dict[Any, Any] | None = None) -> None:
    cfg = OtlpConfig.model_validate({"protocols": {k: v for k, v in (("grpc", grpc),
                                                                     ("http", http)) if v}})

    async def scenario() -> None:
        receiver = OtlpReceiver(ComponentID("otlp"), cfg, {Signal.TRACES: _Sink()})
        await receiver.start(Host(SelfTelemetry(), extensions=extensions or {}))
        await receiver.shutdown()

    asyncio.run(scenario())


def _start_error(**kwargs: Any) -> str:
    with pytest.raises(ConfigError) as err:
        _start(**kwargs)
    [problem] = err.value.problems
    return problem


def test_missing_certificate_file_names_setting_and_path(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    problem = _start_error(grpc={"endpoint": "127.0.0.1:0", "tls": {
        "cert_file": str(missing), "key_file": pki.path("server.key")}})
    assert problem == (f"receivers::otlp::protocols::grpc::tls::cert_file: cannot read "
                       f"{missing}: No such file or directory")


def test_unreadable_key_file(pki: Pki, tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(pki.read("server.key"))
    key.chmod(0)
    if key.stat().st_mode & 0o777 == 0 and _readable(key):
        pytest.skip("running as root: a file without permissions is still readable")
    problem = _start_error(http={"endpoint": "127.0.0.1:0", "tls": {
        "cert_file": pki.path("server.crt"), "key_file": str(key)}})
    assert problem == (f"receivers::otlp::protocols::http::tls::key_file: cannot read {key}: "
                       "Permission denied")


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
        return True
    except OSError:
        return False


def test_key_of_another_certificate(pki: Pki) -> None:
    problem = _start_error(http={"endpoint": "127.0.0.1:0", "tls": {
        "cert_file": pki.path("server.crt"), "key_file": pki.path("client.key")}})
    assert problem == (f"receivers::otlp::protocols::http::tls::key_file: "
                       f"{pki.path('client.key')} is not the private key of the certificate")


def test_encrypted_key_and_non_pem_files(pki: Pki, tmp_path: Path) -> None:
    encrypted = tmp_path / "enc.key"
    subprocess.run(["openssl", "pkey", "-in", pki.path("server.key"), "-aes256", "-passout",
                    "pass:x", "-out", str(encrypted)], check=True, capture_output=True, timeout=30)
    problem = _start_error(grpc={"endpoint": "127.0.0.1:0", "tls": {
        "cert_file": pki.path("server.crt"), "key_file": str(encrypted)}})
    assert problem.startswith("receivers::otlp::protocols::grpc::tls::key_file: ")
    assert "the private key is encrypted" in problem
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    problem = _start_error(http={"endpoint": "127.0.0.1:0", "tls": {
        "cert_file": str(garbage), "key_file": pki.path("server.key")}})
    assert problem == (f"receivers::otlp::protocols::http::tls::cert_file: {garbage} holds no "
                       "PEM certificate")
    problem = _start_error(http={"endpoint": "127.0.0.1:0", "tls": {
        "cert_file": pki.path("server.crt"), "key_file": pki.path("server.key"),
        "client_ca_file": str(garbage)}})
    assert problem.startswith(f"receivers::otlp::protocols::http::tls::client_ca_file: cannot "
                              f"load the CA certificates of {garbage}")


def test_authenticator_must_be_a_started_extension(pki: Pki) -> None:
    problem = _start_error(http={"endpoint": "127.0.0.1:0",
                                 "auth": {"authenticator": "bearertokenauth"}})
    assert problem.startswith("receivers::otlp::protocols::http::auth::authenticator: failed to "
                              "resolve authenticator 'bearertokenauth'")
    problem = _start_error(grpc={"endpoint": "127.0.0.1:0",
                                 "auth": {"authenticator": "health_check"}},
                           extensions={ComponentID("health_check"): object()})
    assert problem == ("receivers::otlp::protocols::grpc::auth::authenticator: 'health_check' is "
                       "not a server authenticator")


def test_a_failed_start_closes_the_listener_already_open(pki: Pki) -> None:
    port = free_port()
    _start_error(grpc={"endpoint": f"127.0.0.1:{port}"},
                 http={"endpoint": "127.0.0.1:0", "tls": {
                     "cert_file": pki.path("server.crt"), "key_file": pki.path("client.key")}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again


def test_otelgw_run_reports_the_file_and_exits(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    config = yaml.safe_load(_config(http={"endpoint": f"127.0.0.1:{free_port()}", "tls": {
        "cert_file": pki.path("server.crt"), "key_file": str(missing)}}))
    config["exporters"]["prometheus"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["service"]["telemetry"] = {"metrics": {"level": "none"}}
    gw = Gateway(tmp_path / "gw", config)
    with pytest.raises(RuntimeError) as err:
        gw.start(timeout=30)
    assert (f"otelgw: cannot start: invalid configuration:\n  receivers::otlp::protocols::http::"
            f"tls::key_file: cannot read {missing}: No such file or directory") in str(err.value)


def test_http_cipher_suites_and_versions_are_applied(pki: Pki) -> None:
    """TLS 1.2 with only the listed suite; a client that offers none of them is refused."""
    cfg = HttpConfig.model_validate({"endpoint": "127.0.0.1:0", "tls": {
        "cert_file": pki.path("server.crt"), "key_file": pki.path("server.key"),
        "max_version": "1.2", "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]}})

    def handshake(port: int, ciphers: str) -> tuple[str, str]:
        ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
        ctx.set_ciphers(ciphers)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return str(tls.version()), tls.cipher()[0]

    async def scenario() -> tuple[Any, Any]:
        server = OtlpHttpServer(cfg, Ingest(ComponentID("otlp"), {Signal.TRACES: _Sink()},
                                            SelfTelemetry()))
        await server.start()
        try:
            good = await asyncio.to_thread(handshake, server.port, "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                                                   "ECDHE-ECDSA-AES256-GCM-SHA384")
            try:
                bad: Any = await asyncio.to_thread(handshake, server.port,
                                                   "ECDHE-ECDSA-AES256-GCM-SHA384")
            except OSError as exc:
                bad = exc
            return good, bad
        finally:
            await server.stop()

    good, bad = asyncio.run(scenario())
    assert good == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert isinstance(bad, OSError), bad
