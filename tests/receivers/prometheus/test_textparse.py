"""The exposition parser against real captures, prometheus_client as an independent oracle, and
the accept/reject rules of Prometheus's textparse (each case written from its lexer rules)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import (CollectorRegistry, Counter, Enum, Gauge, Histogram, Info,
                               Summary)
from prometheus_client.exposition import generate_latest as text_exposition
from prometheus_client.openmetrics.exposition import generate_latest as om_exposition
from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as om_oracle
from prometheus_client.parser import text_string_to_metric_families as text_oracle

from receivers.prometheus.textparse import (ACCEPT_HEADER, MetricFamily, ParseError, parse,
                                            format_om_float)
from tests.receivers.prometheus.realprom import PROMETHEUS, RealPrometheus, Served

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CAPTURES = ["linkerd-proxy.prom", "linkerd-proxy-2022.prom", "traefik.prom"]


def text(body: str) -> list[MetricFamily]:
    return parse(body.encode(), TEXT)


def om(body: str) -> list[MetricFamily]:
    return parse(body.encode(), OM)


def only(families: list[MetricFamily]):
    (family,) = [f for f in families if f.samples]
    (sample,) = family.samples
    return sample


def _key(name: str, labels: dict[str, str], value: float, ts_ms: float | None) -> tuple:
    # le/quantile compared as numbers: Prometheus 3 (and so this parser) rewrites "1" as "1.0"
    norm = tuple(sorted((k, repr(float(v)) if k in ("le", "quantile") else v)
                        for k, v in labels.items()))
    # prometheus_client names every counter sample "<family>_total", even where the
    # exposition wrote none (identity_cert_refresh_count in linkerd-proxy-2022.prom)
    return name.removesuffix("_total"), norm, "NaN" if math.isnan(value) else value, ts_ms


def ours_samples(families: list[MetricFamily]) -> list[tuple]:
    return sorted(_key(s.name, s.labels, s.value, s.timestamp_ms)
                  for f in families for s in f.samples)


def oracle_samples(families) -> list[tuple]:
    return sorted(_key(s.name, s.labels, s.value,
                       None if s.timestamp is None else round(float(s.timestamp) * 1000))
                  for f in families for s in f.samples)


# --- real captures ------------------------------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES)
def test_captures_match_prometheus_client(shared_data: Path, capture: str) -> None:
    body = (shared_data / "prometheus" / capture).read_bytes()
    families = parse(body, TEXT)
    assert ours_samples(families) == oracle_samples(text_oracle(body.decode()))
    # one family per TYPE line, in order, and every sample joined its declared family
    declared = [line.split()[2:4] for line in body.decode().splitlines()
                if line.startswith("# TYPE ")]
    assert [[f.name, f.type] for f in families] == declared


def test_linkerd_values_and_histograms(shared_data: Path) -> None:
    families = {f.name: f for f in parse(
        (shared_data / "prometheus" / "linkerd-proxy.prom").read_bytes(), TEXT)}
    assert len(families) == 28
    assert sum(len(f.samples) for f in families.values()) == 1328
    assert only([families["process_start_time_seconds"]]).value == 1560322933
    for name in ("retry_skipped_total", "route_retry_skipped_total"):
        assert families[name].samples == [] and families[name].type == "counter"
    histograms = [f for f in families.values() if f.type == "histogram"]
    assert len(histograms) == 5
    series: dict[tuple, dict[str, float]] = {}
    for family in histograms:
        for s in family.samples:
            key = (family.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")))
            part = s.name[len(family.name) + 1:]
            series.setdefault(key, {})[s.labels.get("le", part) if part == "bucket" else part] \
                = s.value
    assert len(series) == 44
    for buckets in series.values():
        assert len(buckets) == 26 + 2  # 25 bounds + "+Inf", _sum, _count
        assert buckets["+Inf"] == buckets["count"]
    # Prometheus 3 writes bucket bounds in float form
    bounds = {s.labels["le"] for s in families["response_latency_ms"].samples if "le" in s.labels}
    assert {"1.0", "50000.0", "+Inf"} <= bounds and "1" not in bounds


def test_traefik_exponents_and_no_final_newline(shared_data: Path) -> None:
    body = (shared_data / "prometheus" / "traefik.prom").read_bytes()
    assert not body.endswith(b"\n")
    families = {f.name: f for f in parse(body, TEXT)}
    assert (len(families), sum(len(f.samples) for f in families.values())) == (45, 88)
    assert only([families["go_memstats_buck_hash_sys_bytes"]]).value == 1634591.0
    assert families["go_memstats_alloc_bytes_total"].type == "counter"
    assert families["go_memstats_alloc_bytes"].type == "gauge"
    last = families["traefik_service_requests_total"].samples[-1]
    assert (last.labels["service"], last.value) == ("readiness@http", 70424)


def test_openmetrics_capture(shared_data: Path) -> None:
    body = (shared_data / "prometheus" / "openmetrics-sample.txt").read_bytes()
    lines = body.decode().splitlines()
    families = {f.name: f for f in parse(body, OM)}
    assert list(families) == ["go_build_info", "promhttp_metric_handler_errors",
                              "rpc_durations_histogram_seconds", "rpc_durations_seconds",
                              "rpc_requests"]
    assert [f.type for f in families.values()] == ["gauge", "counter", "histogram", "summary",
                                                   "counter"]
    samples = [s for f in families.values() for s in f.samples]
    assert len(samples) == sum(1 for line in lines if not line.startswith("#"))
    exemplars = [s for s in samples if s.exemplar is not None]
    assert len(exemplars) == sum(1 for line in lines if " # {" in line) == 6
    first = exemplars[0]
    assert first.labels == {"le": "-0.0002899999999999998"}
    assert first.exemplar.labels == {"dummyID": "17783"}
    assert first.exemplar.value == -0.0003825067330956884
    assert first.exemplar.timestamp == 1726839814.2239082
    counter = families["rpc_requests"]
    assert [s.name for s in counter.samples[:2]] == ["rpc_requests_total", "rpc_requests_created"]
    assert counter.samples[1].value == 1726839813.016893
    assert families["go_build_info"].samples[0].labels == {"checksum": "", "path": "",
                                                            "version": ""}
    assert len([s for s in samples if s.name.endswith("_created")]) == 9


# --- generated bodies, prometheus_client as the oracle -------------------------------------


def _registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    c = Counter("requests", "Requests.\nSecond line with a \\ backslash", ["path", "code"],
                registry=reg)
    c.labels('/a"quoted"', "200").inc(3)
    c.labels("back\\slash\nnewline", "500").inc(0.5)
    g = Gauge("temperature_celsius", "Temp.", ["room"], registry=reg, unit="celsius")
    g.labels("kitchen").set(-3.25)
    g.labels("nan").set(float("nan"))
    g.labels("inf").set(float("inf"))
    h = Histogram("latency_seconds", "Latency.", ["svc"], buckets=(2.5e-05, 0.1, 1, 1e6),
                  registry=reg)
    for v in (0.05, 0.5, 3, 1e-6):
        h.labels("api").observe(v)
    s = Summary("size_bytes", "Sizes.", registry=reg)
    s.observe(12)
    Info("build", "Build info.", registry=reg).info({"version": "1.2.3", "rev": "ab:c"})
    Enum("state", "State.", states=["up", "down"], registry=reg).state("down")
    return reg


def _expected(reg: CollectorRegistry, openmetrics: bool) -> list[tuple]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as p1
    from prometheus_client.parser import text_string_to_metric_families as p2
    body = (om_exposition if openmetrics else text_exposition)(reg).decode()
    return oracle_samples((p1 if openmetrics else p2)(body))


def test_generated_text_exposition_matches_oracle() -> None:
    reg = _registry()
    families = parse(text_exposition(reg), TEXT)
    assert ours_samples(families) == _expected(reg, openmetrics=False)
    by_name = {f.name: f for f in families}
    assert by_name["requests_total"].type == "counter"
    assert by_name["requests_total"].help == "Requests.\nSecond line with a \\ backslash"
    labels = [s.labels for s in by_name["requests_total"].samples]
    assert {"path": '/a"quoted"', "code": "200"} in labels
    assert {"path": "back\\slash\nnewline", "code": "500"} in labels
    assert [s.name for s in by_name["latency_seconds"].samples][-2:] == [
        "latency_seconds_count", "latency_seconds_sum"]


def test_generated_openmetrics_exposition_matches_oracle() -> None:
    reg = _registry()
    body = om_exposition(reg)
    families = parse(body, OM)
    assert ours_samples(families) == _expected(reg, openmetrics=True)
    oracle = {f.name: f for f in om_oracle(body.decode())}
    ours = {f.name: f for f in families}
    assert {n: (f.type, f.unit, f.documentation) for n, f in oracle.items()} == {
        n: (f.type, f.unit, f.help) for n, f in ours.items()}
    assert ours["state"].type == "stateset" and ours["build"].type == "info"
    assert ours["build"].samples[0].name == "build_info"


def test_openmetrics_types_exemplars_against_oracle() -> None:
    body = ('# TYPE a info\n# HELP a Build \\"x\\".\na_info{v="1"} 1\n'
            '# TYPE s stateset\ns{s="a"} 1\ns{s="b"} 0\n'
            '# TYPE g gaugehistogram\ng_bucket{le="1"} 1\ng_bucket{le="+Inf"} 2\n'
            'g_gcount 2\ng_gsum 3\n'
            '# TYPE c_seconds counter\n# UNIT c_seconds seconds\n'
            'c_seconds_total{x="y"} 1 # {trace_id="abc"} 0.5 1520879607.5\n'
            'c_seconds_created{x="y"} 1520879600\n'
            '# TYPE h histogram\nh_bucket{le="1"} 0 # {} 0.25\nh_bucket{le="+Inf"} 1\n'
            'h_count 1\nh_sum 3\n# EOF\n')
    families = {f.name: f for f in om(body)}
    oracle = {f.name: f for f in om_oracle(body)}
    assert ours_samples(list(families.values())) == oracle_samples(oracle.values())
    assert [(f.name, f.type, f.unit) for f in families.values()] == [
        (f.name, f.type, f.unit) for f in oracle.values()]
    assert families["a"].help == 'Build "x".'
    assert families["g"].samples[0].labels == {"le": "1"}  # gauge histograms keep theirs
    total = families["c_seconds"].samples[0]
    ex = oracle["c_seconds"].samples[0].exemplar
    assert (total.exemplar.labels, total.exemplar.value, total.exemplar.timestamp) == (
        ex.labels, ex.value, float(ex.timestamp))
    assert families["h"].samples[0].exemplar.labels == {}
    assert families["h"].samples[0].labels == {"le": "1.0"}


# --- text format: what Prometheus accepts ----------------------------------------------------


def test_text_whitespace_comments_and_metadata() -> None:
    body = ("# A comment\n#no space is a comment too\n#   HELP  foo   Help  text \n"
            "\t# TYPE foo untyped\n\n   \nfoo   42   1700000000000  \n"
            "foo\t{ a = \"1\" , b=\"2\" , } \t 7\n# HELP\n# EOF is a comment here\n"
            "  foo 8\n")
    family, indented = text(body)
    assert (family.name, family.type, family.help) == ("foo", "unknown", "  Help  text ")
    assert [(s.labels, s.value, s.timestamp_ms) for s in family.samples] == [
        ({}, 42.0, 1700000000000), ({"a": "1", "b": "2"}, 7.0, None)]
    # Prometheus 3 keeps a sample line's indentation in the metric name (2.x fails the scrape)
    assert (indented.name, indented.samples[0].value) == ("  foo", 8.0)


def test_text_label_forms() -> None:
    body = ('a:b:c{x="1"} 1\n'
            'm{} 2\n'
            'm2{x="1",} 3\n'
            'm3{x="1"y="2"} 4\n'  # Prometheus's lexer needs no comma between pairs
            'm4{x="a\\\\b\\"c\\nd\\te"} 5\n'  # \t is not an escape: kept as written
            'm5{x="multi\nline"} 6\n'
            'm6{}7\n')
    got = {s.name: (s.labels, s.value) for f in text(body) for s in f.samples}
    assert got == {"a:b:c": ({"x": "1"}, 1.0), "m": ({}, 2.0), "m2": ({"x": "1"}, 3.0),
                   "m3": ({"x": "1", "y": "2"}, 4.0),
                   "m4": ({"x": 'a\\b"c\nd\\te'}, 5.0),
                   "m5": ({"x": "multi\nline"}, 6.0), "m6": ({}, 7.0)}


def test_text_help_escapes() -> None:
    (family,) = text('# HELP foo a \\\\ b \\n c \\" d\nfoo 1\n')
    assert family.help == 'a \\ b \n c \\" d'  # the text format's HELP knows no \"


def test_utf8_quoted_names() -> None:
    body = ('# TYPE "my.metric" gauge\n# HELP "my.metric" Dotted.\n'
            '{"my.metric", "my.label"="v", plain="w"} 1\n{"other.metric"} 2\n'
            'named{"quoted label"="x"} 3\n')
    families = {f.name: f for f in text(body)}
    assert families["my.metric"].type == "gauge"
    assert families["my.metric"].samples[0].labels == {"my.label": "v", "plain": "w"}
    assert families["other.metric"].samples[0].value == 2
    assert families["named"].samples[0].labels == {"quoted label": "x"}
    om_body = '# TYPE "a.b" counter\n{"a.b_total",x="1"} 1\n# EOF\n'
    (family,) = om(om_body)
    assert (family.name, family.samples[0].name) == ("a.b", "a.b_total")


@pytest.mark.parametrize("token,value", [
    ("NaN", math.nan), ("nan", math.nan), ("+Inf", math.inf), ("-Inf", -math.inf),
    ("inf", math.inf), ("Infinity", math.inf), ("-infinity", -math.inf), ("1e3", 1000.0),
    (".5", 0.5), ("5.", 5.0), ("+3", 3.0), ("-0", -0.0), ("1.8446744073709552e+19", 2.0**64),
    ("2.840814e+06", 2840814.0), ("00012", 12.0),
])
def test_values_as_go_parses_them(token: str, value: float) -> None:
    got = only(text(f"m {token}\n")).value
    assert (math.isnan(got) and math.isnan(value)) or got == value


@pytest.mark.parametrize("token", ["abc", "+nan", "0x10", "1_000", "1e999", "-1e999", "١",
                                   "1.2.3", "Inf1", "", "1e"])
def test_values_go_rejects(token: str) -> None:
    with pytest.raises(ParseError, match=r"^line 2: "):
        text(f"ok 1\nm {token}\n" if token else "ok 1\nm\n")


@pytest.mark.parametrize("body,message", [
    ('m{a="1",a="2"} 1\n', 'label name "a" is not unique'),
    ('m{a="1", a="2"} 1\n', 'label name "a" is not unique'),
    ('m{__name__="x"} 1\n', 'label name "__name__" is not unique'),
    ('{a="1"} 1\n', "metric name not set"),
    ('{"a", "b"} 1\n', "metric name already set"),
    ('m{a=1} 1\n', "expected a quoted value"),
    ('m{1a="x"} 1\n', "expected a label name"),
    ('m{a.b="x"} 1\n', 'expected "="'),
    ('m{,} 1\n', "expected a label name"),
    ('m{a="1",,b="2"} 1\n', "expected a label name"),
    ('m{a="1} 1\n', "unterminated quoted string"),
    ('m{a="1"\n', "expected a label name"),
    ("m 1 -5\n", "expected a timestamp"),
    ("m 1 1.5\n", "expected the end of the line after the timestamp"),
    ("m 1 99999999999999999999\n", "out of range"),
    ("m 1 2 3\n", "expected the end of the line"),
    ('m 1 # {a="b"} 1\n', "expected a timestamp"),  # no exemplars in the text format
    ("m 1\r\n", 'invalid value "1\r"'),
    ("1m 1\n", "expected a metric name"),
    ("m{a=\"1\"}{b=\"2\"} 1\n", "expected a value"),
    ("m\n", "expected a value"),
    ("# TYPE m counterx\n", 'invalid metric type "counterx"'),
    ("# TYPE m  counter\n", 'invalid metric type " counter"'),
    ("# TYPE m gaugehistogram\n", "invalid metric type"),
    ("# HELP 1m x\n", "expected a metric name"),
])
def test_text_errors(body: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        text("# HELP ok fine\nok 1\n" + body)
    assert str(info.value).startswith("line 3: ")
    assert message in str(info.value)


def test_invalid_utf8_fails_except_in_comments() -> None:
    assert only(parse(b"# comment \xff\xfe\nm 1\n", TEXT)).value == 1
    for body in (b'm{a="\xff"} 1\n', b"# HELP m \xff\nm 1\n", b"m\xff 1\n"):
        with pytest.raises(ParseError, match="line 1: .*UTF-8|line 1: "):
            parse(body, TEXT)
    with pytest.raises(ParseError, match="line 2: invalid UTF-8"):
        parse(b"m 1\nm{a=\"\xc3\"} 1\n# EOF\n", OM)


# --- OpenMetrics: what Prometheus accepts and rejects -----------------------------------------


def test_openmetrics_eof_rules() -> None:
    assert om("m 1\n# EOF") and om("m 1\n# EOF\n")
    assert om("# EOF\n") == []
    for body, line, message in [
        ("m 1\n", 2, 'does not end with "# EOF"'),
        ("", 1, 'does not end with "# EOF"'),
        ("m 1\n# EOF\nm 2\n", 3, 'unexpected data after "# EOF"'),
        ("m 1\n# EOF\n\n", 3, 'unexpected data after "# EOF"'),
        ("# EOF\n# EOF\n", 2, 'unexpected data after "# EOF"'),
    ]:
        with pytest.raises(ParseError) as info:
            om(body)
        assert str(info.value).startswith(f"line {line}: ") and message in str(info.value)


@pytest.mark.parametrize("line,message", [
    ("", "expected a metric name"),
    ("# a comment", 'expected "# HELP", "# TYPE", "# UNIT" or "# EOF"'),
    ("#HELP m x", "expected a metric name"),
    ("m  1", "expected a space and a value"),
    ("m\t1", "expected a space and a value"),
    (" m 1", "expected a metric name"),
    ("m 1 ", "expected a timestamp, an exemplar or the end"),
    ('m{a="1", b="2"} 1', "expected a label name"),
    ('m {a="1"} 1', "invalid value"),
    ('m{a="1"b="2"} 1', "expected ',' or '}'"),
    ("# TYPE m untyped", 'invalid metric type "untyped"'),
    ("# TYPE m", "expected a space and text"),
    ("# HELP  m x", "expected a metric name"),
    ("# UNIT m_seconds bytes", 'unit "bytes" is not a suffix of metric "m_seconds"'),
    ("# UNIT mseconds seconds", "is not a suffix"),
    ("m 1 NaN", 'invalid timestamp "NaN"'),
    ("m 1 abc", 'invalid timestamp "abc"'),
    ('m 1 # {a="1"}', "expected a space and the exemplar value"),
    ('m 1 # {a="1"} x', 'invalid exemplar value "x"'),
    ('m 1 # {a="1"} 1 +Inf', 'invalid exemplar timestamp "+Inf"'),
    ('m 1 # {a="1"} 1 2 3', "expected the exemplar timestamp and the end"),
    ('m 1 # {"a"} 1', 'expected "="'),
    ('m{a="1",a="1"} 1', 'label name "a" is not unique'),
])
def test_openmetrics_errors(line: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        om(f"# TYPE ok gauge\nok 1\n{line}\n# EOF\n")
    assert str(info.value).startswith("line 3: ")
    assert message in str(info.value)


def test_openmetrics_timestamps_and_exemplars() -> None:
    families = om('# TYPE c counter\nc_total 1 1.5\nc_total{b="1"} 1 1520879607.789\nc_total{a="x"} 2 -1 # {s="t",} 3\n'
                  'c_total{a="y"} 3 # {s="\\"q\\""} 4 10\n'
                  'g 1 1e3\n# EOF\n')
    c = {f.name: f for f in families}["c"]
    assert [(s.timestamp_ms, s.exemplar) for s in c.samples][:1] == [(1500, None)]
    # Go's int64(ts * 1000): the float product truncated, not rounded
    assert c.samples[1].timestamp_ms == int(1520879607.789 * 1000) == 1520879607789
    assert c.samples[2].timestamp_ms == -1000
    assert (c.samples[2].exemplar.labels, c.samples[2].exemplar.value,
            c.samples[2].exemplar.timestamp) == ({"s": "t"}, 3.0, None)
    assert c.samples[3].exemplar.labels == {"s": '"q"'}
    assert c.samples[3].exemplar.timestamp == 10.0
    assert only([f for f in families if f.name == "g"]).timestamp_ms == 1_000_000


# --- grouping into families ---------------------------------------------------------------


def test_grouping() -> None:
    body = ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\n"
            "h_count 2\nh 9\n"
            "# TYPE s summary\ns{quantile=\"0.50\"} 1\ns_sum 2\ns_count 3\ns_created 4\n"
            "# TYPE c_total counter\nc_total 5\nc_created 6\n"
            "# TYPE g gauge\ng 7\ng_total 8\n"
            "# HELP only_help With help, no type.\nonly_help 9\n"
            "loose_sum 10\nloose_sum 11\n")
    families = text(body)
    layout = [(f.name, f.type, [s.name for s in f.samples]) for f in families]
    assert layout == [
        ("h", "histogram", ["h_bucket", "h_bucket", "h_sum", "h_count"]),
        ("h", "unknown", ["h"]),  # a histogram has no sample named like the family
        ("s", "summary", ["s", "s_sum", "s_count", "s_created"]),
        ("c_total", "counter", ["c_total", "c_created"]),
        ("g", "gauge", ["g"]),
        ("g_total", "unknown", ["g_total"]),
        ("only_help", "unknown", ["only_help"]),
        ("loose_sum", "unknown", ["loose_sum", "loose_sum"]),
    ]
    assert families[0].samples[0].labels == {"le": "1.0"}
    assert families[2].samples[0].labels == {"quantile": "0.5"}


def test_samples_before_their_type_line() -> None:
    families = text("foo 1\n# TYPE foo gauge\nfoo 2\n")
    assert [(f.name, f.type, [s.value for s in f.samples]) for f in families] == [
        ("foo", "gauge", [1.0, 2.0])]


# --- content type, header, float formatting ----------------------------------------------


@pytest.mark.parametrize("content_type,is_om", [
    ("application/openmetrics-text; version=1.0.0; charset=utf-8", True),
    ("Application/OpenMetrics-Text;version=0.0.1", True),
    ("text/plain; version=0.0.4", False), ("text/plain;version=1.0.0;escaping=allow-utf-8", False),
    ("", False), ("application/json", False), ("garbage;;", False),
])
def test_content_type_picks_the_parser(content_type: str, is_om: bool) -> None:
    body = b"m 1\n"  # valid text, invalid OpenMetrics (no # EOF)
    if is_om:
        with pytest.raises(ParseError, match="EOF"):
            parse(body, content_type)
    else:
        assert only(parse(body, content_type)).value == 1


def test_accept_header_prefers_openmetrics() -> None:
    parts = [p.split(";") for p in ACCEPT_HEADER.split(",")]
    assert [p[0] for p in parts] == ["application/openmetrics-text",
                                     "application/openmetrics-text", "text/plain",
                                     "text/plain", "*/*"]
    assert "version=1.0.0" in parts[0] and "version=0.0.1" in parts[1]
    assert "version=0.0.4" in parts[3]
    qs = [float(p[-1].removeprefix("q=")) for p in parts]
    assert qs == sorted(qs, reverse=True) and len(set(qs)) == len(qs)


@pytest.mark.parametrize("value,expected", [
    (1, "1.0"), (0, "0.0"), (-1, "-1.0"), (0.1, "0.1"), (100000, "100000.0"), (1e6, "1e+06"),
    (1234567, "1.234567e+06"), (1e-5, "1e-05"), (0.0001, "0.0001"), (2.5e-7, "2.5e-07"),
    (5e20, "5e+20"), (1e100, "1e+100"), (-0.0007899999999999999, "-0.0007899999999999999"),
    (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (0.005, "0.005"),
])
def test_format_om_float_is_gos_g_format(value: float, expected: str) -> None:
    assert format_om_float(value) == expected


# --- the real Prometheus as the oracle for what a scrape accepts ----------------------------

# Prometheus 2.42 is installed; this parser follows 3.x. No case has quoted names (3.x only).
ORACLE_CASES: list[tuple[str, str]] = [
    (TEXT, "# HELP m x\n# TYPE m gauge\nm 1\nm{a=\"1\"} 2\n"),
    (TEXT, "m\t{ a = \"1\" , b=\"2\" , }   3 \n\n# comment\n#\tHELP m x\nn{a=\"1\"}4\n"),
    (TEXT, "m{a=\"1\"b=\"2\"} 1\n"),
    (TEXT, "m{a=\"x\\\\y\\\"z\\nw\\q\"} 1\n"),
    (TEXT, "m{a=\"multi\nline\"} 1\n"),
    (TEXT, "m NaN\nn +Inf\no -Inf\np Infinity\nq .5\nr 5.\n"),
    (TEXT, "m{a=\"1\",a=\"2\"} 1\n"),
    (TEXT, "m{__name__=\"x\"} 1\n"),
    (TEXT, "m +nan\n"),
    (TEXT, "m 1_000\n"),
    (TEXT, "m 0x10\n"),
    (TEXT, "m 1e999\n"),
    (TEXT, "m 1 # {a=\"b\"} 1\n"),
    (TEXT, "m 1 1.5\n"),
    (TEXT, "m 1\r\n"),
    (TEXT, "m{,} 1\n"),
    (TEXT, "# TYPE m counterx\nm 1\n"),
    (TEXT, "m{a.b=\"1\"} 1\n"),
    (TEXT, "m{a=\"\xff\"} 1\n"),
    (TEXT, "# comment with \xff\nm 1\n"),
    (TEXT, ""),
    ("application/json", "m 1\nn 2\n"),
    (OM, "# TYPE m gauge\nm 1\n# EOF\n"),
    (OM, "# TYPE c counter\n# HELP c x\nc_total 1 # {t=\"1\"} 2 3\nc_created 4\n# EOF"),
    (OM, "m 1\n"),
    (OM, "m 1\n# EOF\nm 2\n"),
    (OM, "m 1\n# EOF\n\n"),
    (OM, "m 1\n\n# EOF\n"),
    (OM, "# comment\nm 1\n# EOF\n"),
    (OM, "m  1\n# EOF\n"),
    (OM, "m{a=\"1\", b=\"2\"} 1\n# EOF\n"),
    (OM, "# TYPE m untyped\nm 1\n# EOF\n"),
    (OM, "# TYPE m_seconds gauge\n# UNIT m_seconds bytes\nm_seconds 1\n# EOF\n"),
    (OM, "m 1 # {a=\"1\"} 1 +Inf\n# EOF\n"),
    (OM, "m 1 NaN\n# EOF\n"),
    (OM, "m 1 \n# EOF\n"),
]
# Where 3.x (this parser) accepts what 2.42 rejects: 2.42 fails the scrape.
NEWER_CASES: list[tuple[str, str]] = [
    (TEXT, "  m 1\n"),  # 3.x: the metric "  m" (a valid UTF-8 name); 2.42: invalid name
    (OM, "m{a=\"1\",} 1\n# EOF\n"),  # a trailing comma: OpenMetrics in 3.x only
]


@pytest.fixture(scope="module")
def prometheus_verdicts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict]]:
    if not PROMETHEUS:
        pytest.skip("needs /usr/bin/prometheus (Debian package prometheus; make system-deps)")
    cases = ORACLE_CASES + NEWER_CASES
    served = Served({f"/c{i}": (body.encode("latin-1"), ctype)
                     for i, (ctype, body) in enumerate(cases)})
    prom = RealPrometheus(tmp_path_factory.mktemp("prom-parse"), [
        {"job_name": f"c{i}", "metrics_path": f"/c{i}",
         "static_configs": [{"targets": [served.address]}]}
        for i in range(len(cases))])
    try:
        yield prom.wait_scraped()
    finally:
        prom.close()
        served.close()


@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
def test_accepts_and_rejects_like_prometheus(prometheus_verdicts: dict, case: int) -> None:
    ctype, body = ORACLE_CASES[case]
    raw = body.encode("latin-1")
    verdict = prometheus_verdicts[f"c{case}"]
    try:
        families = parse(raw, ctype)
    except ParseError as exc:
        assert verdict["up"] == 0, f"Prometheus accepts {body!r}; we say {exc}"
        return
    assert verdict["up"] == 1, f"Prometheus rejects {body!r}"
    assert verdict["samples"] == sum(len(f.samples) for f in families)


@pytest.mark.parametrize("case", range(len(NEWER_CASES)))
def test_accepts_what_only_prometheus_3_accepts(prometheus_verdicts: dict, case: int) -> None:
    ctype, body = NEWER_CASES[case]
    assert prometheus_verdicts[f"c{len(ORACLE_CASES) + case}"]["up"] == 0  # 2.42
    assert parse(body.encode(), ctype)


def test_careful_path_agrees_with_fast_path(shared_data: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import receivers.prometheus.textparse as textparse

    reg = _registry()
    bodies = [((shared_data / "prometheus" / name).read_bytes(), TEXT) for name in CAPTURES]
    bodies += [((shared_data / "prometheus" / "openmetrics-sample.txt").read_bytes(), OM),
               (text_exposition(reg), TEXT), (om_exposition(reg), OM)]
    fast = [parse(body, ctype) for body, ctype in bodies]
    monkeypatch.setattr(textparse, "_TEXT_FAST", lambda line: None)
    monkeypatch.setattr(textparse, "_OM_FAST", lambda line: None)
    monkeypatch.setattr(textparse, "_TEXT_META", lambda line: None)
    careful = [parse(body, ctype) for body, ctype in bodies]
    for a, b in zip(fast, careful):
        assert repr(a) == repr(b)  # NaN values compare equal this way
