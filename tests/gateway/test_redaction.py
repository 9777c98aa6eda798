"""Credentials (the ClickHouse password, bearer tokens, private keys) never appear in what otelgw
prints: `otelgw validate` of a good or a bad configuration, YAML errors, start-up failures, and
the log of a gateway whose ClickHouse server is down."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import cli
from gateway.config.loader import redact
from loadtests.gatewayproc import Gateway, free_port
from tests.receivers.otlp import otlpdata

SECRET = "S3cr3t-" + uuid.uuid4().hex
ROOT = Path(__file__).resolve().parents[2]


def _base(exporter: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "extensions": {"bearertokenauth": {"token": SECRET}},
        "receivers": {"otlp": {"protocols": {"http": {
            "endpoint": f"127.0.0.1:{free_port()}",
            "auth": {"authenticator": "bearertokenauth"}}}}},
        "processors": {"batch": {"timeout": "50ms"}},
        "exporters": {"clickhouse": exporter or {
            "endpoint": f"http://otel:{SECRET}@127.0.0.1:{free_port()}",
            "password": SECRET, "create_schema": False,
            "query_endpoint": {"enabled": True, "endpoint": f"127.0.0.1:{free_port()}",
                               "username": "reader", "password": SECRET}}},
        "service": {"extensions": ["bearertokenauth"],
                    "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "debug"}},
                    "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"],
                                           "exporters": ["clickhouse"]}}},
        **extra,
    }


def _write(tmp_path: Path, config: dict[str, Any] | str) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex}.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def validate(tmp_path: Path, config: dict[str, Any] | str,
             capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """`otelgw validate` in this process (the subprocess test below runs the real command)."""
    path = _write(tmp_path, config)
    try:
        code = cli.main(["validate", "--config", str(path)])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return subprocess.CompletedProcess([], code, out.out, out.err)


def test_validate_of_a_good_config_shows_no_secret(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "validate", "--config",
                          str(_write(tmp_path, _base()))],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "valid (1 pipelines" in out.stdout
    assert SECRET not in out.stdout + out.stderr


def _set(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = config
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize("path, value, where", [
    ("exporters.clickhouse.password", [SECRET], "exporters::clickhouse::password"),
    ("exporters.clickhouse.password", {"value": SECRET}, "exporters::clickhouse::password"),
    ("exporters.clickhouse.connection_params", {"password": [SECRET]},
     "exporters::clickhouse::connection_params::password"),
    ("exporters.clickhouse.query_endpoint.password", 12345678901234,
     "exporters::clickhouse::query_endpoint::password"),
    ("extensions.bearertokenauth.token", 12345678901234, "extensions::bearertokenauth::token"),
    ("extensions.bearertokenauth.tokens", SECRET, "extensions::bearertokenauth::tokens"),
    ("extensions.bearertokenauth.tokens", [SECRET, [SECRET]],
     "extensions::bearertokenauth::tokens::1"),
    ("receivers.otlp.protocols.http.tls", {"cert_file": "/c", "key_pem": [SECRET]},
     "receivers::otlp::protocols::http::tls::key_pem"),
    ("receivers.otlp.protocols.http.auth", f"Bearer {SECRET}",
     "receivers::otlp::protocols::http::auth"),
    ("exporters.clickhouse.endpoint", f"tcp://otel:{SECRET}@db:9000",
     "exporters::clickhouse::endpoint"),
    ("exporters.clickhouse.query_endpoint", f"otel:{SECRET}@localhost",
     "exporters::clickhouse::query_endpoint"),
])
def test_validate_errors_name_the_option_not_the_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, value: Any,
        where: str) -> None:
    secret = str(value) if isinstance(value, int) else SECRET
    out = validate(tmp_path, _set(_base(), path, value), capsys)
    assert out.returncode == 2, out.stdout
    assert f"{where}: " in out.stderr, out.stderr
    assert secret not in out.stdout + out.stderr, out.stderr


def test_yaml_errors_do_not_quote_the_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = yaml.safe_dump(_base()).replace(f"password: {SECRET}", f'password: "{SECRET}')
    assert f'"{SECRET}' in text
    out = validate(tmp_path, text, capsys)
    assert out.returncode == 2
    assert "not valid YAML" in out.stderr and "line " in out.stderr, out.stderr
    assert SECRET not in out.stderr


def test_redact_url_userinfo() -> None:
    assert redact(f"cannot reach http://otel:{SECRET}@db:8123/?x=1") == \
        "cannot reach http://otel:***@db:8123/?x=1"
    assert redact("http://db:8123/ and user@host") == "http://db:8123/ and user@host"


def _post_logs(gw: Gateway, token: str) -> int:
    port = gw.config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/logs", method="POST",
                                 data=otlpdata.logs("redaction").SerializeToString(),
                                 headers={"Content-Type": "application/x-protobuf",
                                          "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_gateway_log_with_clickhouse_down_shows_no_secret(tmp_path: Path) -> None:
    config = _base()
    ch = config["exporters"]["clickhouse"]
    ch["retry_on_failure"] = {"initial_interval": "100ms", "max_interval": "200ms"}
    ch["sending_queue"] = {"drain_timeout": "1s"}  # the store stays down: do not wait on it
    gw = Gateway(tmp_path / "gw", config).start(timeout=60)
    try:
        assert _post_logs(gw, "wrong") == 401
        _post_logs(gw, SECRET)  # accepted into the queue, or refused as unavailable
        where = ch["endpoint"].rsplit("@", 1)[1]  # 127.0.0.1:port, in the failure lines
        deadline = time.monotonic() + 15
        while where not in gw.logs().split("otelgw is running", 1)[1] \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        gw.stop()
    log = gw.logs()
    assert where in log.split("otelgw is running", 1)[1]  # the inserts did fail, and said so
    assert f"http://otel:***@{where}" in log
    assert SECRET not in log


def test_failed_start_against_clickhouse_shows_no_secret(tmp_path: Path) -> None:
    config = _base()
    config["exporters"]["clickhouse"]["create_schema"] = True
    gw = Gateway(tmp_path / "gw", config)
    with pytest.raises(RuntimeError) as err:
        gw.start(timeout=60)
    assert "cannot start" in str(err.value)
    assert SECRET not in str(err.value)
