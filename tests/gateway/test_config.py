"""The Collector-shaped configuration: what loads, and what a user is told when it does not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.component import ComponentID
from gateway.config import load_config_text
from gateway.config.loader import GatewayConfig
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  clickhouse:
    path: /tmp/otelgw-test-data
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [clickhouse]
"""


def load(text: str, env: dict[str, str] | None = None) -> GatewayConfig:
    return load_config_text(textwrap.dedent(text), "test.yaml", env or {})


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(text, env)
    assert str(err.value).startswith("invalid configuration:")
    for problem in err.value.problems:
        assert problem in str(err.value)  # the message lists every problem
    return err.value.problems


def clickhouse(cfg: GatewayConfig) -> Any:
    return cfg.exporters[ComponentID("clickhouse")].config


# ------------------------------------------------------------------------------- what loads


def test_minimal_config() -> None:
    cfg = load(MINIMAL)
    assert list(cfg.pipelines) == [ComponentID("traces")]
    otlp = cfg.receivers[ComponentID("otlp")].config
    assert otlp.protocols.grpc is not None and otlp.protocols.http is None
    assert cfg.warnings == []


def test_null_protocol_turns_it_on_with_defaults() -> None:
    cfg = load(MINIMAL.replace("grpc:", "grpc:\n      http:"))
    protocols = cfg.receivers[ComponentID("otlp")].config.protocols
    assert protocols.grpc.endpoint == "localhost:4317"
    assert protocols.grpc.max_recv_msg_size_mib == 4
    assert protocols.http.endpoint == "localhost:4318"
    assert protocols.http.max_request_body_size == 20 * 1024 * 1024
    assert protocols.http.traces_url_path == "/v1/traces"


def test_named_components_and_pipelines() -> None:
    cfg = load("""
        receivers:
          otlp:
            protocols: {grpc: {endpoint: "127.0.0.1:4317"}}
          otlp/internal:
            protocols: {http: {endpoint: "127.0.0.1:14318"}}
        processors:
          batch:
          batch/big: {send_batch_size: 50000, timeout: 1s}
        exporters:
          clickhouse:
          clickhouse/archive: {endpoint: "https://ch.example:8443", database: archive}
        service:
          pipelines:
            traces:
              receivers: [otlp]
              processors: [batch]
              exporters: [clickhouse]
            traces/2:
              receivers: [otlp, otlp/internal]
              processors: [batch/big]
              exporters: [clickhouse, clickhouse/archive]
            logs/archive:
              receivers: [otlp/internal]
              exporters: [clickhouse/archive]
    """)
    assert set(cfg.pipelines) == {ComponentID("traces"), ComponentID("traces", "2"),
                                  ComponentID("logs", "archive")}
    assert cfg.pipelines[ComponentID("traces", "2")].exporters == ["clickhouse",
                                                                   "clickhouse/archive"]
    assert set(cfg.receivers) == {ComponentID("otlp"), ComponentID("otlp", "internal")}
    big = cfg.processors[ComponentID("batch", "big")].config
    assert (big.send_batch_size, big.timeout) == (50000, 1.0)
    archive = cfg.exporters[ComponentID("clickhouse", "archive")].config
    assert (archive.endpoint, archive.database) == ("https://ch.example:8443", "archive")


def test_env_expansion_forms() -> None:
    cfg = load("""
        receivers:
          otlp:
            protocols:
              grpc:
                endpoint: ${env:GRPC_HOST}:${GRPC_PORT}
                max_recv_msg_size_mib: ${env:MAX_MIB}
              http:
                endpoint: ${env:HTTP_ENDPOINT:-0.0.0.0:4318}
                include_metadata: ${env:META}
        exporters:
          clickhouse:
            endpoint: ${env:CH_URL:-http://default-host:8123}
            username: ${env:CH_USER}
            password: ${env:CH_PASSWORD}
            database: db_${env:TEAM}_${env:UNSET_WITH_DEFAULT:-x}
            timeout: ${env:CH_TIMEOUT}
        service:
          pipelines:
            traces:
              receivers: [otlp]
              exporters: [clickhouse]
    """, {"GRPC_HOST": "10.0.0.1", "GRPC_PORT": "14317", "MAX_MIB": "16", "META": "true",
          "CH_URL": "http://ch:8123", "CH_USER": "true", "CH_PASSWORD": "0123",
          "TEAM": "obs", "CH_TIMEOUT": "10"})
    protocols = cfg.receivers[ComponentID("otlp")].config.protocols
    assert protocols.grpc.endpoint == "10.0.0.1:14317"
    assert protocols.grpc.max_recv_msg_size_mib == 16       # "16" becomes an int
    assert protocols.http.endpoint == "0.0.0.0:4318"        # default of an unset variable
    assert protocols.http.include_metadata is True          # "true" becomes a bool
    ch = clickhouse(cfg)
    assert ch.endpoint == "http://ch:8123"                  # set: the default is not used
    assert ch.username == "true"                            # a string field keeps the text...
    assert ch.password.get_secret_value() == "0123"         # ...exactly, leading zero and all
    assert ch.database == "db_obs_x"
    assert ch.timeout == 10.0
    assert cfg.warnings == []


def test_unset_variable_expands_to_empty_with_a_warning() -> None:
    cfg = load(MINIMAL.replace("/tmp/otelgw-test-data", "/data/${env:NOPE_UNSET}"))
    assert clickhouse(cfg).path == "/data/"
    assert cfg.warnings == ["exporters::clickhouse::path: environment variable NOPE_UNSET is "
                            "not set (expands to empty)"]


def test_double_dollar_is_a_literal_dollar() -> None:
    cfg = load(MINIMAL.replace("/tmp/otelgw-test-data", "/data/$$HOME/$${env:X}/a$$b"),
               {"X": "expanded", "HOME": "/root"})
    assert clickhouse(cfg).path == "/data/$HOME/${env:X}/a$b"


def test_unsupported_reference_is_an_error() -> None:
    [problem] = problems(MINIMAL.replace("/tmp/otelgw-test-data", "${file:/run/secrets/path}"))
    assert problem.startswith("exporters::clickhouse::path: cannot expand "
                              "'${file:/run/secrets/path}'")


# ---------------------------------------------------------------------------- what is refused


def test_unknown_top_level_key() -> None:
    [problem] = problems(MINIMAL + "exporter:\n  clickhouse:\n")
    assert problem.startswith("exporter: unknown top-level key")
    assert "exporters" in problem


def test_unknown_component_type_lists_the_known_ones() -> None:
    [problem] = problems(MINIMAL.replace("exporters:\n",
                                         "  jaeger:\n    protocols: {}\nexporters:\n"))
    assert problem.startswith("receivers::jaeger: unknown receiver type 'jaeger' (known: ")
    assert "otlp" in problem.split("known: ")[1]
    [problem] = problems(MINIMAL + "extensions:\n  zpages:\n")
    assert problem.startswith("extensions::zpages: unknown extension type 'zpages' (known: ")
    assert "health_check" in problem.split("known: ")[1]


def test_unknown_nested_key_has_its_full_path() -> None:
    [problem] = problems(MINIMAL.replace("      grpc:\n",
                                         "      grpc:\n        endpiont: 0.0.0.0:4317\n"))
    assert problem == "receivers::otlp::protocols::grpc::endpiont: unknown key"


def test_wrong_value_type_has_its_path_and_value() -> None:
    [problem] = problems(MINIMAL.replace("      grpc:\n",
                                         "      grpc:\n        max_recv_msg_size_mib: lots\n"))
    assert problem.startswith("receivers::otlp::protocols::grpc::max_recv_msg_size_mib: ")
    assert "integer" in problem


def test_no_protocol_is_an_error() -> None:
    [problem] = problems(MINIMAL.replace("    protocols:\n      grpc:\n", "    protocols: {}\n"))
    assert problem == ("receivers::otlp::protocols: must specify at least one protocol "
                       "(grpc or http)")


def test_several_errors_are_reported_at_once() -> None:
    found = problems("""
        receivers:
          otlp:
            protocols:
              grpc:
                endpoint: 0.0.0.0:4317
                bogus: 1
          zipkin:
        processors:
          batch:
            timeout: soon
        exporters:
          clickhouse:
            create_schema: maybe
        extensions:
        service:
          extensions: [pprof]
          pipelines:
            traces:
              receivers: [otlp]
              processors: [batch]
              exporters: [clickhouse]
              exporter: [clickhouse]
            logs:
              receivers: [otlp/missing]
              exporters: [clickhouse/missing]
            profiles:
              receivers: [otlp]
              exporters: [clickhouse]
        telemetry: {}
    """)
    expected_starts = [
        "telemetry: unknown top-level key",
        "receivers::otlp::protocols::grpc::bogus: unknown key",
        "receivers::zipkin: unknown receiver type 'zipkin'",
        "processors::batch::timeout: invalid duration 'soon'",
        "exporters::clickhouse::create_schema: ",
        "service::pipelines::traces::exporter: unknown key",
        "service::pipelines::logs::receivers: references receiver 'otlp/missing' which is "
        "not configured",
        "service::pipelines::logs::exporters: references exporter 'clickhouse/missing' which "
        "is not configured",
        "service::pipelines::profiles: pipeline id must be traces, metrics or logs[/name]",
        "service::extensions: 'pprof' is not configured",
    ]
    for start in expected_starts:
        assert any(p.startswith(start) for p in found), (start, found)
    assert len(found) == len(expected_starts), found


def test_invalid_component_is_not_also_called_unconfigured() -> None:
    # the exporter has an error of its own; the pipeline naming it must not add a false one
    found = problems(MINIMAL.replace("    path: /tmp/otelgw-test-data",
                                     "    endpoint: tcp://ch:9000"))
    assert len(found) == 1, found
    assert found[0].startswith("exporters::clickhouse::endpoint: endpoint must be http(s)://")


def test_pipeline_referencing_an_unconfigured_component() -> None:
    found = problems(MINIMAL.replace("receivers: [otlp]", "receivers: [otlp, otlp/2]")
                     .replace("      exporters: [clickhouse]",
                              "      processors: [batch]\n      exporters: [clickhouse]"))
    assert found == [
        "service::pipelines::traces::receivers: references receiver 'otlp/2' which is not "
        "configured",
        "service::pipelines::traces::processors: references processor 'batch' which is not "
        "configured",
    ]


def test_pipeline_needs_receivers_and_exporters() -> None:
    found = problems(MINIMAL.replace("      receivers: [otlp]\n", ""))
    assert found == ["service::pipelines::traces::receivers: must list at least one receiver"]


def test_no_pipelines_is_an_error() -> None:
    found = problems(MINIMAL[: MINIMAL.index("service:")])
    assert found == ["service::pipelines: at least one pipeline must be configured"]


def test_key_given_twice_is_an_error() -> None:
    found = problems(MINIMAL.replace("exporters:\n", "exporters:\n  clickhouse:\n    path: /a\n"))
    assert len(found) == 1, found
    assert found[0].startswith("exporters::clickhouse: defined twice (lines ")


def test_connectors_are_refused() -> None:
    found = problems(MINIMAL + "connectors:\n  spanmetrics:\n")
    assert found == ["connectors: connectors are not supported by otelgw"]


@pytest.mark.parametrize("text, start", [
    ("receivers: [otlp", "test.yaml: not valid YAML"),
    ("- a\n- b\n", "test.yaml: the top level must be a mapping"),
])
def test_not_a_config_at_all(text: str, start: str) -> None:
    [problem] = problems(text)
    assert problem.startswith(start)


# ------------------------------------------------------------------------------ otelgw validate


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "validate", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=path.parent)


def test_validate_accepts_a_good_config(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(MINIMAL)
    result = validate(path)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "1 pipelines" in result.stdout


def test_validate_prints_every_problem_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL.replace("      grpc:\n", "      grpc:\n        endpiont: x\n")
                    .replace("exporters: [clickhouse]", "exporters: [clickhouse/nope]"))
    result = validate(path)
    assert result.returncode != 0
    assert "receivers::otlp::protocols::grpc::endpiont: unknown key" in result.stderr
    assert ("service::pipelines::traces::exporters: references exporter 'clickhouse/nope' "
            "which is not configured") in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_fails_on_a_missing_file(tmp_path: Path) -> None:
    result = validate(tmp_path / "absent.yaml")
    assert result.returncode != 0
    assert "cannot read" in result.stderr


@pytest.mark.parametrize("path", sorted((REPO / "config").rglob("*.y*ml")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_validate(path: Path) -> None:
    result = validate(path)
    assert result.returncode == 0, result.stderr


def test_repeated_log_lines_are_sampled() -> None:
    import logging

    from gateway.logs import Sampler

    sampler = Sampler(tick=60, initial=3, thereafter=5)
    passed = []
    for i in range(20):
        record = logging.LogRecord("t", logging.WARNING, __file__, 1, "scrape of %s failed",
                                   (f"target{i}",), None)
        record.created = 1000.0
        if sampler.filter(record):
            passed.append(record.getMessage())
    # 3 in full, then the 5th, 10th and 15th repeat after those; each says what it skipped
    assert passed[:3] == ["scrape of target0 failed", "scrape of target1 failed",
                          "scrape of target2 failed"]
    assert passed[3:] == ["scrape of target7 failed (4 similar lines suppressed)",
                          "scrape of target12 failed (4 similar lines suppressed)",
                          "scrape of target17 failed (4 similar lines suppressed)"]
    other = logging.LogRecord("t", logging.WARNING, __file__, 1, "another message", (), None)
    other.created = 1000.0
    assert sampler.filter(other)
    late = logging.LogRecord("t", logging.WARNING, __file__, 1, "scrape of %s failed", ("x",),
                             None)
    late.created = 1061.0  # a new tick: full lines again
    assert sampler.filter(late)
