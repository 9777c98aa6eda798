"""Deterministic OTLP requests for tests.

`traces` / `logs` / `metrics` build requests that exercise every value rule the contrib exporter
has (see tests/oracle.py): every AnyValue type with its edge cases (EDGE_VALUES), random values
(doubles from random bit patterns, so the float formatting sees the whole range), ids all-zero /
absent / normal, unknown enum values, timestamps of 0, end before start, every metric kind.
The same seed always gives the same request.

Every resource carries RUN_KEY = run, so a test selects its own rows with
`ResourceAttributes['otelgw.test.run'] = run`; every span / log record / data point carries a `seq`
attribute that orders rows.
"""

from __future__ import annotations

import random
import struct
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

RUN_KEY = "otelgw.test.run"
SEQ_KEY = "seq"
BASE_NS = 1_751_241_600 * 10**9  # 2025-06-30T00:00:00Z; times stay within days (few partitions)
NAN, INF = float("nan"), float("inf")


class KV(list):  # type: ignore[type-arg]
    """A kvlist as (key, value) pairs, so repeated keys can be written."""


class StrIndex(int):
    """AnyValue.string_value_strindex (a profiles-only kind pdata v1.35 reads as Empty)."""


def any_value(x: Any) -> AnyValue:
    """AnyValue from Python: None → empty, bool, int, float, str, bytes, list → array, KV/dict →
    kvlist."""
    v = AnyValue()
    if x is None:
        pass
    elif isinstance(x, StrIndex):
        v.string_value_strindex = int(x)
    elif isinstance(x, bool):
        v.bool_value = x
    elif isinstance(x, int):
        v.int_value = x
    elif isinstance(x, float):
        v.double_value = x
    elif isinstance(x, str):
        v.string_value = x
    elif isinstance(x, bytes):
        v.bytes_value = x
    elif isinstance(x, list) and not isinstance(x, KV):
        v.array_value.SetInParent()  # an empty array is still an array
        for e in x:
            v.array_value.values.append(any_value(e))
    else:
        v.kvlist_value.SetInParent()
        for k, e in (x.items() if isinstance(x, dict) else x):
            v.kvlist_value.values.append(KeyValue(key=k, value=any_value(e)))
    return v


def key_values(pairs: Any) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(x)) for k, x in pairs]


STRINGS = [
    "", "plain", 'quote " back\\slash', "<b>&amp;</b>", "slash / and \\/", "ends with \\",
    "unicode é ß 日本 😀", "ctl \x00\x01\x07\b\t\n\x0b\f\r\x0e\x0f\x10\x1a\x1b\x1f\x7f end",
    "\u2028 \u2029", "lookalikes \\u000B \\u003c \\n \\\\/",
]
INTS = [0, 1, -1, -3, 42, 2**53 + 1, 2**63 - 1, -(2**63)]
DOUBLES = [1.5, 1.0, 100.0, 0.0, -0.0, 1e21, 1e-7, 1e20, 5e-324, 1e-6, 1.234e-6, -2.5e-8,
           1.2345678901234569e23, 0.1, 0.30000000000000004, 123456789.125, 1.7976931348623157e308,
           2.2250738585072014e-308, 9.999999999999999e20, 1e-5, NAN, INF, -INF]
BYTES = [b"", b"\xff\x00\x01", b"hi", bytes(range(256))]
COMPOSITES: list[Any] = [
    [], KV(), {},
    ["s", 1, 1.5, True, False, b"hi", b"", None, -0.0, 1e21, 1e-7, 2**63 - 1, 5e-324],
    [1.0, NAN], [INF], KV([("k", -INF)]),                     # NaN/Inf inside → whole value ""
    KV([("b", 1), ("a", "x<y&z>"), ("b", 2), ("é", None), ("", b""), ("B", 0.0)]),  # repeated b
    [s for s in STRINGS], KV([(s, s) for s in STRINGS]),       # JSON escaping, keys too
    [[1, 2], [], KV([("x", 1)]), KV(), "flat"],                # deeper than ANY_VALUE_DEPTH
    KV([("deep", [1, [2, [3]]]), ("kv", KV([("nan", NAN)]))]),  # NaN too deep to be seen
    [[[[[]]]]], [StrIndex(3), None],
]
EDGE_VALUES: list[Any] = [*STRINGS, *INTS, *DOUBLES, True, False, *BYTES, None, StrIndex(1),
                          *COMPOSITES]
_ALPHABET = "abcxyz _-./\\\"'<>&\n\t\x00\x1fé日😀\u2028"


class Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def string(self, n: int = 8) -> str:
        return "".join(self.rng.choice(_ALPHABET) for _ in range(self.rng.randint(0, n)))

    def double(self) -> float:
        r = self.rng.random()
        if r < 0.5:  # any bit pattern: subnormals, huge, the odd NaN
            return float(struct.unpack("<d", self.rng.randbytes(8))[0])
        if r < 0.8:
            return self.rng.uniform(-1, 1) * 10.0 ** self.rng.randint(-30, 30)
        return float(self.rng.randint(-10**6, 10**6)) / self.rng.choice([1, 2, 4, 10, 1000])

    def value(self, depth: int = 0) -> Any:
        kinds = ["str", "int", "double", "bool", "bytes", "empty"]
        if depth < 3:
            kinds += ["array", "kvlist"]
        kind = self.rng.choice(kinds)
        if kind == "str":
            return self.string()
        if kind == "int":
            return self.rng.randint(-(2**63), 2**63 - 1) >> self.rng.randint(0, 63)
        if kind == "double":
            return self.double()
        if kind == "bool":
            return self.rng.random() < 0.5
        if kind == "bytes":
            return self.rng.randbytes(self.rng.randint(0, 6))
        if kind == "empty":
            return None
        n = self.rng.randint(0, 4)
        if kind == "array":
            return [self.value(depth + 1) for _ in range(n)]
        return KV((self.rng.choice("abcé<"), self.value(depth + 1)) for _ in range(n))

    def attributes(self, n: int, edges: int = 0, all_edges: bool = False, **fixed: Any
                   ) -> list[KeyValue]:
        """n random attributes, `edges` picks from EDGE_VALUES (or all of them), then `fixed`;
        unique keys."""
        pairs = [(f"r{i}.{self.string(3)}", self.value()) for i in range(n)]
        pairs += [(f"e{i}", self.rng.choice(EDGE_VALUES)) for i in range(edges)]
        if all_edges:
            pairs += [(f"edge{i:02d}", x) for i, x in enumerate(EDGE_VALUES)]
        pairs += list(fixed.items())
        self.rng.shuffle(pairs)  # the exporter sorts keys; the input order must not matter
        return key_values(pairs)

    def id(self, size: int) -> bytes:
        """Mostly random, sometimes all-zero or absent (both mean 'no id')."""
        r = self.rng.random()
        return bytes(size) if r < 0.15 else b"" if r < 0.3 else self.rng.randbytes(size)

    def time(self) -> int:
        return 0 if self.rng.random() < 0.1 else BASE_NS + self.rng.randrange(2 * 86400 * 10**9)

    def resources(self, run: str) -> list[tuple[list[KeyValue], str]]:
        """(attributes, schema_url): a string service.name, an int one, none at all."""
        svc = [f"svc-{run}", self.rng.randint(1, 10**6), None]
        out = []
        for i, name in enumerate(svc):
            fixed = {RUN_KEY: run, **({"service.name": name} if name is not None else {})}
            out.append((self.attributes(2, edges=4 if i == 0 else 1, **fixed),
                        self.rng.choice(["", "https://opentelemetry.io/schemas/1.26.0"])))
        return out

    def scope(self, scope: Any) -> None:
        scope.name = self.rng.choice(["", "io.opentelemetry.test", self.string()])
        scope.version = self.rng.choice(["", "1.2.3", self.string(4)])
        scope.attributes.extend(self.attributes(1, edges=1))
        scope.dropped_attributes_count = self.rng.choice([0, 3, 2**32 - 1])


def traces(seed: int, run: str, spans_per_scope: int = 10) -> ExportTraceServiceRequest:
    g, rng, seq = Gen(seed), random.Random(seed + 1), 0
    req = ExportTraceServiceRequest()
    for attrs, schema_url in g.resources(run):
        rs = req.resource_spans.add(schema_url=schema_url)
        rs.resource.attributes.extend(attrs)
        for _ in range(2):
            ss = rs.scope_spans.add()
            g.scope(ss.scope)
            for _ in range(spans_per_scope):
                s = ss.spans.add(trace_id=g.id(16), span_id=g.id(8), parent_span_id=g.id(8),
                                 name=f"span {seq} {g.string(4)}")
                s.trace_state = rng.choice(["", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"])
                s.kind = rng.choice([0, 1, 2, 3, 4, 5, 9])  # 9: unknown → ''
                s.flags = rng.choice([0, 1, 0x300])
                s.start_time_unix_nano = g.time()
                # end before start (wraps as uint64), equal, or later
                s.end_time_unix_nano = max(0, s.start_time_unix_nano + rng.choice(
                    [-1, -(10**9), 0, 1, 10**6, rng.randrange(10**10)]))
                s.attributes.extend(g.attributes(rng.randint(0, 4), edges=3, all_edges=seq == 0,
                                                 **{SEQ_KEY: seq}))
                s.status.code = rng.choice([0, 1, 2, 5])  # 5: unknown → ''
                s.status.message = rng.choice(["", "boom", g.string()])
                for _ in range(rng.choice([0, 0, 1, 3])):
                    s.events.add(time_unix_nano=g.time(), name=g.string(),
                                 attributes=g.attributes(rng.randint(0, 3), edges=1))
                for _ in range(rng.choice([0, 0, 1, 2])):
                    s.links.add(trace_id=g.id(16), span_id=g.id(8),
                                trace_state=rng.choice(["", "a=1"]),
                                attributes=g.attributes(rng.randint(0, 2), edges=1))
                seq += 1
    return req


_BODIES: list[Any] = [*STRINGS, 7, 1.5, NAN, True, b"\x01", ["a", 1], KV([("k", "v")]), None]


def logs(seed: int, run: str, records_per_scope: int = 12) -> ExportLogsServiceRequest:
    g, rng, seq = Gen(seed), random.Random(seed + 1), 0
    req = ExportLogsServiceRequest()
    for attrs, schema_url in g.resources(run):
        rl = req.resource_logs.add(schema_url=schema_url)
        rl.resource.attributes.extend(attrs)
        for _ in range(2):
            sl = rl.scope_logs.add(schema_url=rng.choice(["", "https://example.com/s"]))
            g.scope(sl.scope)
            for _ in range(records_per_scope):
                r = sl.log_records.add(trace_id=g.id(16), span_id=g.id(8))
                r.time_unix_nano = g.time()  # 0 → ObservedTimestamp is used (0 too: epoch)
                r.observed_time_unix_nano = g.time()
                r.severity_number = rng.choice([*range(25), 30, 300, -1])  # stored as uint8
                r.severity_text = rng.choice(["", "INFO", "warn", g.string(4)])
                r.flags = rng.choice([0, 1, 0x1FF, 2**32 - 1])  # only the low 8 bits are kept
                body = _BODIES[seq % len(_BODIES)] if seq < 2 * len(_BODIES) else g.value()
                if body is not None:
                    r.body.CopyFrom(any_value(body))
                r.attributes.extend(g.attributes(rng.randint(0, 4), edges=3, all_edges=seq == 0,
                                                 **{SEQ_KEY: seq}))
                seq += 1
    return req


def _exemplars(g: Gen, dp: Any) -> None:
    for _ in range(g.rng.choice([0, 1, 3])):
        x = dp.exemplars.add(time_unix_nano=g.time(), span_id=g.id(8), trace_id=g.id(16),
                             filtered_attributes=g.attributes(g.rng.randint(0, 2), edges=1))
        kind = g.rng.choice(["int", "double", "none"])
        if kind == "int":
            x.as_int = g.rng.choice([0, -5, 2**63 - 1, 2**53 + 1])
        elif kind == "double":
            x.as_double = g.rng.choice([g.double(), -0.0, NAN, INF])


def metrics(seed: int, run: str, points: int = 4) -> ExportMetricsServiceRequest:
    g, rng = Gen(seed), random.Random(seed + 1)
    seq = 0
    req = ExportMetricsServiceRequest()

    def point(container: Any) -> Any:
        nonlocal seq
        dp = container.data_points.add(
            attributes=g.attributes(rng.randint(0, 3), edges=2, all_edges=seq == 0,
                                    **{SEQ_KEY: seq}),
            start_time_unix_nano=rng.choice([0, g.time()]), time_unix_nano=g.time(),
            flags=rng.choice([0, 1, 2**32 - 1]))
        seq += 1
        return dp

    def number(dp: Any) -> None:
        kind = rng.choice(["int", "double", "double", "none"])
        if kind == "int":
            dp.as_int = rng.choice([*INTS, rng.randint(-1000, 1000)])
        elif kind == "double":
            dp.as_double = rng.choice([*DOUBLES, g.double()])
        _exemplars(g, dp)

    for attrs, schema_url in g.resources(run):
        rm = req.resource_metrics.add(schema_url=schema_url)
        rm.resource.attributes.extend(attrs)
        sm = rm.scope_metrics.add(schema_url=rng.choice(["", "https://example.com/s"]))
        g.scope(sm.scope)

        def metric(name: str) -> Any:
            return sm.metrics.add(name=f"{name} {g.string(3)}", description=g.string(),
                                  unit=rng.choice(["", "ms", "By", "{request}", "µs"]))

        for _ in range(2):
            m = metric("gauge")
            m.gauge.SetInParent()
            for _ in range(points):
                number(point(m.gauge))
        for temporality in (0, 1, 2, 7):  # 7: unknown, stored as is
            for monotonic in (False, True):
                m = metric("sum")
                m.sum.aggregation_temporality = temporality
                m.sum.is_monotonic = monotonic
                for _ in range(points // 2):
                    number(point(m.sum))
        for temporality in (1, 2):
            m = metric("histogram")
            m.histogram.aggregation_temporality = temporality
            for i in range(points):
                dp = point(m.histogram)
                bounds = sorted(g.double() for _ in range(rng.randint(0, 4)))
                dp.explicit_bounds.extend(bounds)
                dp.bucket_counts.extend(rng.randrange(2**64) >> rng.randint(0, 64)
                                        for _ in range(len(bounds) + 1 if bounds else 0))
                dp.count = rng.randrange(2**64)
                if i % 2:  # unset sum/min/max are written as 0
                    dp.sum, dp.min, dp.max = rng.choice([g.double(), NAN]), -1.5, g.double()
                _exemplars(g, dp)
        for temporality in (1, 2):
            m = metric("exponential_histogram")
            m.exponential_histogram.aggregation_temporality = temporality
            for i in range(points):
                dp = point(m.exponential_histogram)
                dp.count = rng.randrange(2**64)
                dp.scale = rng.choice([-10, -1, 0, 3, 20])
                dp.zero_count = rng.randrange(2**64)
                dp.zero_threshold = 1e-9  # not stored
                dp.positive.offset = rng.choice([-(2**31), -3, 0, 7, 2**31 - 1])
                dp.positive.bucket_counts.extend(rng.randrange(1000)
                                                 for _ in range(rng.randint(0, 5)))
                if i % 2:
                    dp.negative.offset = rng.randint(-100, 100)
                    dp.negative.bucket_counts.extend(rng.randrange(2**64) for _ in range(3))
                    dp.sum, dp.min, dp.max = g.double(), g.double(), INF
                _exemplars(g, dp)
        m = metric("summary")
        for _ in range(points):
            dp = point(m.summary)
            dp.count = rng.randrange(2**64)
            dp.sum = rng.choice([g.double(), -0.0, NAN])
            for q in rng.sample([0.0, 0.5, 0.9, 0.99, 1.0], rng.randint(0, 5)):
                dp.quantile_values.add(quantile=q, value=rng.choice([g.double(), INF]))
        metric("gauge without points").gauge.SetInParent()  # no data points: no rows
    return req
