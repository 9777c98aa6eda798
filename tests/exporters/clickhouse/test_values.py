"""Values end to end: generated OTLP requests go through a real gateway (OTLP/HTTP → ClickHouse's
protobuf parsing → the flattening views) and every row, column by column, must equal what the
contrib exporter v0.129.0 writes, as tests/oracle.py computes it.
"""

from __future__ import annotations

import math
import urllib.request
from typing import Any

import pytest

from tests import oracle, payloads
from loadtests import payloads as loadtest_payloads
from loadtests.gatewayproc import Gateway
from tests.oracle import go_float, go_json

SEED = 20250630
MISSING = object()


# ---------------------------------------------------------- helpers

def post(gateway: Gateway, signal: str, request: Any) -> None:
    req = urllib.request.Request(f"{gateway.http_url}/v1/{signal}",
                                 data=request.SerializeToString(), method="POST",
                                 headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def fetch(gateway: Gateway, table: str, run: str, attrs_col: str, expected: int
          ) -> list[dict[str, Any]]:
    where = f"ResourceAttributes['{payloads.RUN_KEY}'] = '{run}'"
    assert gateway.wait_count(table, expected, where) >= expected, f"{table}: rows missing"
    out = gateway.sql(f"SELECT * FROM {table} WHERE {where} "
                      f"ORDER BY toUInt64({attrs_col}['{payloads.SEQ_KEY}']) "
                      f"SETTINGS {oracle.JSON_SETTINGS} FORMAT JSONEachRow")
    return [oracle.parse_row(line) for line in out.splitlines() if line.strip()]


def same(a: Any, b: Any) -> bool:
    """Equal as ClickHouse means it. A Float64 may print without a point (`1`,
    `9223372036854776000`: shortest digits), so it is read back as the float those digits denote;
    -0.0 and 0.0 differ; Map key order counts (keys are stored sorted)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) or isinstance(b, float):
        return (isinstance(a, int | float) and isinstance(b, int | float)
                and float(a) == float(b) and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def diff(path: str, want: Any, got: Any) -> list[str]:
    if same(want, got):
        return []
    if isinstance(want, dict) and isinstance(got, dict):
        out = [m for k in want for m in diff(f"{path}[{k!r}]", want[k], got.get(k, MISSING))]
        out += [f"{path}[{k!r}]: unexpected, got {got[k]!r}" for k in got if k not in want]
        return out or [f"{path}: key order: expected {list(want)}, got {list(got)}"]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [m for i, (w, g) in enumerate(zip(want, got)) for m in diff(f"{path}[{i}]", w, g)]
    shown = "(missing)" if got is MISSING else repr(got)
    msg = f"{path}:\n    expected {want!r}\n    got      {shown}"
    if isinstance(want, str) and isinstance(got, str):
        i = next((i for i, (w, g) in enumerate(zip(want, got)) if w != g), min(len(want), len(got)))
        msg += f"\n    first difference at {i}: {want[i:i + 12]!r} vs {got[i:i + 12]!r}"
    return [msg]


def check_rows(table: str, attrs_col: str, want: list[dict[str, Any]],
               got: list[dict[str, Any]]) -> None:
    assert want, f"{table}: the payload makes no rows; the test would prove nothing"
    want = sorted(want, key=lambda r: int(r[attrs_col][payloads.SEQ_KEY]))
    problems = []
    if len(want) != len(got):
        problems.append(f"{table}: expected {len(want)} rows, got {len(got)}")
    for w, g in zip(want, got):
        where = f"{table} seq={w[attrs_col][payloads.SEQ_KEY]}"
        if list(w) != list(g):
            problems.append(f"{where}: columns\n    expected {list(w)}\n    got      {list(g)}")
        for col in w:
            problems += diff(f"{where} {col}", w[col], g.get(col, MISSING))
    assert not problems, (f"{len(problems)} mismatches:\n" + "\n".join(problems[:40])
                          + ("\n…" if len(problems) > 40 else ""))


# ---------------------------------------------------------- the oracle's own rules

@pytest.mark.parametrize(("x", "text"), [
    (1.5, "1.5"), (1.0, "1"), (100.0, "100"), (0.0, "0"), (-0.0, "-0"),
    (1e20, "100000000000000000000"), (1e21, "1e+21"),
    (1.2345678901234569e23, "1.2345678901234569e+23"), (1e-6, "0.000001"),
    (1.234e-6, "0.000001234"), (1e-7, "1e-7"), (-2.5e-8, "-2.5e-8"), (1.234e-10, "1.234e-10"),
    (5e-324, "5e-324"), (float("nan"), "json: unsupported value: NaN"),
    (float("inf"), "json: unsupported value: +Inf"),
    (float("-inf"), "json: unsupported value: -Inf"),
])
def test_go_float(x: float, text: str) -> None:
    # The examples of contrib_ddl.md 4.2, which come from Go's strconv/encoding/json.
    assert go_float(x) == text


def test_go_json() -> None:
    raw = {"c": [1.5, True, None, "aGk=", {"z": 1e21}], "b": 1, "a": "x<y&z>"}
    assert go_json(raw) == (
        '{"a":"x\\u003cy\\u0026z\\u003e","b":1,"c":[1.5,true,null,"aGk=",{"z":1e+21}]}')
    assert go_json("\b\f\n\r\t\x00\x0b\x1f\x7f\u2028/\\\"é") == (
        '"\\b\\f\\n\\r\\t\\u0000\\u000b\\u001f\x7f\\u2028/\\\\\\"é"')


def test_payloads_are_deterministic() -> None:
    assert payloads.traces(1, "r") == payloads.traces(1, "r")
    assert payloads.metrics(1, "r") == payloads.metrics(1, "r")
    assert payloads.logs(1, "r") != payloads.logs(2, "r")
    big = loadtest_payloads.traces(500, seed=3)
    assert big == loadtest_payloads.traces(500, seed=3)
    assert sum(len(ss.spans) for rs in big.resource_spans for ss in rs.scope_spans) == 500


# ---------------------------------------------------------- end to end

def test_traces(gateway: Gateway) -> None:
    run = f"values-traces-{SEED}"
    req = payloads.traces(SEED, run)
    post(gateway, "traces", req)
    want = oracle.trace_rows(req)
    check_rows("otel_traces", "SpanAttributes", want,
               fetch(gateway, "otel_traces", run, "SpanAttributes", len(want)))


def test_logs(gateway: Gateway) -> None:
    run = f"values-logs-{SEED}"
    req = payloads.logs(SEED, run)
    post(gateway, "logs", req)
    want = oracle.log_rows(req)
    check_rows("otel_logs", "LogAttributes", want,
               fetch(gateway, "otel_logs", run, "LogAttributes", len(want)))


@pytest.fixture(scope="module")
def metrics_run(gateway: Gateway) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """One request feeds all five tables."""
    run = f"values-metrics-{SEED}"
    req = payloads.metrics(SEED, run)
    post(gateway, "metrics", req)
    return run, oracle.metric_rows(req)


@pytest.mark.parametrize("table", list(oracle.METRIC_TABLES.values()))
def test_metrics(gateway: Gateway, metrics_run: Any, table: str) -> None:
    run, want = metrics_run
    check_rows(table, "Attributes", want[table],
               fetch(gateway, table, run, "Attributes", len(want[table])))
