"""Fuzz target: Prometheus text format and OpenMetrics bodies (receivers/prometheus/textparse.py)
and the whole scrape decoding path behind it (metric relabeling, the OTLP mapping, start-time
adjustment): generated bodies, mutated ones, and slices of the shared captures when present.

Properties: parse() returns families of valid UTF-8 text and float values, or raises ParseError,
nothing else; a scrape of any body ends in an OTLP request that encodes and parses again (a
body Prometheus would refuse makes the scrape fail, reported as up=0, never an exception).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receivers.prometheus import textparse
from receivers.prometheus.adjust import InitialPointAdjuster
from receivers.prometheus.config import PrometheusReceiverConfig
from receivers.prometheus.convert import to_request
from receivers.prometheus.scrape import (
    LoopOptions,
    ScrapeLoop,
    Target,
    discovered_labels,
    populate_labels,
)
from tests.fuzz.mutate import mutated

TEXT = "text/plain; version=0.0.4"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

# ---------------------------------------------------------------------------- generated bodies

VALID = {
    "name": st.one_of(st.sampled_from(["http_requests_total", "rpc_seconds", "up", "m",
                                       "rpc_seconds_bucket", "rpc_seconds_sum", "a_created",
                                       "rpc_seconds_count", "s_info", "_x:y"]),
                      st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,10}", fullmatch=True)),
    "label": st.one_of(st.sampled_from(["le", "quantile", "job", "instance", "code", "a", "_"]),
                       st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True)),
    "value": st.one_of(st.sampled_from(["0.5", "+Inf", "1", "1e3", "NaN", "", "日本",
                                        'a\\"b', "\\\\", "\\n"]),
                       st.text(st.characters(exclude_characters='"\\\n',
                                             exclude_categories=["Cs"]), max_size=8)),
    "number": st.one_of(st.sampled_from(["1", "-1.5e3", "NaN", "+Inf", "-Inf", ".5", "5.", "-0"]),
                        st.floats(allow_nan=False, allow_infinity=False).map(repr)),
    "sep": st.just(","), "trailing": st.just(""), "space": st.just(" "),
}
ODD = {
    "name": st.sampled_from(["9bad", "", "a-b", "é"]),
    "label": st.sampled_from(["__name__", "1x", "é", ""]),
    "value": st.sampled_from(["x\ny", "\\q", '"', "\\"]),
    "number": st.sampled_from(["Inf", "0x10", "1_000", "1e999", "nan", "infinity", "",
                               "18446744073709551616", "nan(1)"]),
    "sep": st.sampled_from([", ", ",,", ""]), "trailing": st.just(","),
    "space": st.sampled_from(["\t", "  "]),
}
TIMESTAMPS = {  # (text format: ms, OpenMetrics: seconds), then odd ones
    False: st.sampled_from(["", " 1700000000000", " 0"]),
    True: st.sampled_from(["", " 1700000000", " 1700000000.125"]),
    None: st.sampled_from([" -1", " 1.5", " 99999999999999999999", " 1e3", " 0x1"]),
}


@st.composite
def sample_line(draw: Any, om: bool, clean: bool) -> str:
    def pick(what: str) -> Any:
        return draw(VALID[what] if clean or draw(st.integers(0, 3)) else ODD[what])

    def timestamp() -> str:
        return draw(TIMESTAMPS[om] if clean or draw(st.integers(0, 3)) else TIMESTAMPS[None])

    name = pick("name")
    pairs = [f'{pick("label")}="{pick("value")}"' for _ in range(draw(st.integers(0, 3)))]
    if draw(st.integers(0, 7)) == 0:  # a UTF-8 name: quoted, inside the braces
        pairs.insert(0, f'"{name}.utf8"')
        name = ""
    labels = ("{" + pick("sep").join(pairs) + pick("trailing") + "}"
              if pairs or draw(st.booleans()) else "")
    line = f"{name}{labels}{pick('space')}{pick('number')}{timestamp()}"
    if om and draw(st.integers(0, 3)) == 0:
        line += f' # {{trace_id="{pick("value")}"}} {pick("number")}{timestamp()}'
    return line


@st.composite
def meta_line(draw: Any, om: bool, clean: bool) -> str:
    kinds = ["HELP", "TYPE", "UNIT"] if om else ["HELP", "TYPE", "comment", "blank"]
    kind = draw(st.sampled_from(kinds if clean else [*kinds, "EOF", "UNIT", "comment"]))
    name = draw(VALID["name"] if clean else st.one_of(VALID["name"], ODD["name"]))
    types = ["counter", "gauge", "histogram", "summary"] + (
        ["unknown", "info", "stateset", "gaugehistogram"] if om else ["untyped"])
    if kind == "TYPE":
        return f"# TYPE {name} " + draw(st.sampled_from(types if clean else [*types, "bogus"]))
    if kind == "HELP":
        return f"# HELP {name} " + draw(st.sampled_from(["", "Requests.", "a\\nb", "é"]))
    if kind == "UNIT":
        return f"# UNIT {name} " + draw(st.sampled_from(["seconds", "bytes", ""]))
    return {"EOF": "# EOF", "comment": "# just a comment", "blank": ""}[kind]


@st.composite
def bodies(draw: Any) -> tuple[bytes, str]:
    """Exposition bodies; clean ones (all lines valid) half of the time, so that the later
    stages see parsed families, not just errors."""
    om, clean = draw(st.booleans()), draw(st.booleans())
    lines = draw(st.lists(st.one_of(sample_line(om, clean), sample_line(om, clean),
                                    meta_line(om, clean)), max_size=12))
    ctype = OPENMETRICS if om else draw(st.sampled_from([TEXT, "", "text/html"]))
    if om and (clean or draw(st.booleans())):
        lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode(), ctype


def _captures() -> list[bytes]:
    """Slices of the shared Prometheus captures, if they are there (never copied in here)."""
    where = Path(__file__).resolve().parents[3] / "shared" / "data" / "prometheus"
    out = []
    for path in sorted(where.glob("*")) if where.is_dir() else []:
        if path.suffix in (".prom", ".txt"):
            data = path.read_bytes()
            out += [data[i:i + 3000] for i in range(0, min(len(data), 30_000), 3000)]
    return out


KNOWN_GOOD = [
    b"# HELP rpc_seconds RPC latency.\n# TYPE rpc_seconds histogram\n"
    b'rpc_seconds_bucket{le="0.1"} 1\nrpc_seconds_bucket{le="+Inf"} 3\n'
    b"rpc_seconds_sum 0.7\nrpc_seconds_count 3\n# TYPE up gauge\nup 1 1700000000000\n",
    b"# TYPE a counter\n# UNIT a seconds\na_total{x=\"1\"} 3 1700000000.5 "
    b"# {trace_id=\"ab\"} 1 1700000000\na_created 1700000000\n"
    b"# TYPE q summary\nq{quantile=\"0.9\"} 2\nq_sum 3\nq_count 4\n# EOF\n",
]
CORPUS = KNOWN_GOOD + _captures()


def check_parse(body: bytes, ctype: str) -> None:
    try:
        families = textparse.parse(body, ctype)
    except textparse.ParseError:
        return
    for fam in families:
        fam.name.encode()
        for s in fam.samples:
            assert isinstance(s.value, float)
            for k, v in s.labels.items():
                k.encode(), v.encode()  # text, never surrogates smuggled from bad bytes


@given(case=bodies())
def test_generated_bodies(case: tuple[bytes, str]) -> None:
    check_parse(*case)


@given(data=st.data(), ctype=st.sampled_from([TEXT, OPENMETRICS]))
def test_mutated_bodies(data: Any, ctype: str) -> None:
    check_parse(data.draw(mutated(data.draw(st.sampled_from(CORPUS)), max_steps=10)), ctype)


@given(body=st.binary(max_size=300), ctype=st.sampled_from([TEXT, OPENMETRICS]))
def test_random_bytes(body: bytes, ctype: str) -> None:
    check_parse(body, ctype)


# ---------------------------------------------------------------------------- the scrape path

_CFG = PrometheusReceiverConfig.model_validate({"config": {"scrape_configs": [{
    "job_name": "fuzz", "static_configs": [{"targets": ["127.0.0.1:9"]}],
    "metric_relabel_configs": [
        {"source_labels": ["__name__"], "regex": "drop_.*", "action": "drop"},
        {"source_labels": ["code"], "target_label": "status", "replacement": "s$1"},
        {"regex": "a", "action": "labeldrop"}],
    "sample_limit": 50}]}}).config.scrape_configs[0]


def _loop() -> ScrapeLoop:
    disc = discovered_labels(_CFG, {"__address__": "127.0.0.1:9"}, {})
    labels = populate_labels(_CFG, disc)
    assert labels is not None
    return ScrapeLoop(Target(labels, disc, _CFG.params),
                      LoopOptions(_CFG, None, lambda *_: None))  # type: ignore[arg-type]


def scrape(loop: ScrapeLoop, adjuster: InitialPointAdjuster, body: bytes, ctype: str,
           t_ms: int) -> None:
    txn, total, added, _, error = loop.append(body, ctype, t_ms)
    assert error is None or isinstance(error, str)
    assert 0 <= added <= total or error is not None
    txn.set_initial_start_times()
    resources = list(txn.resources.values())
    adjuster.adjust(resources)
    request = to_request(resources, "fuzz")
    type(request).FromString(request.SerializeToString())
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for p in getattr(m, kind).data_points if kind else ():
                    assert p.time_unix_nano >= 0 and not math.isnan(p.time_unix_nano)


@given(scrapes=st.lists(st.one_of(bodies(), st.just((CORPUS[0], TEXT))),
                        min_size=1, max_size=3))
def test_successive_scrapes_of_generated_bodies(scrapes: list[tuple[bytes, str]]) -> None:
    loop, adjuster = _loop(), InitialPointAdjuster(120)
    for i, (body, ctype) in enumerate(scrapes):
        scrape(loop, adjuster, body, ctype, 1_700_000_000_000 + i * 15_000)


@given(data=st.data())
def test_scrapes_of_mutated_captures(data: Any) -> None:
    loop, adjuster = _loop(), InitialPointAdjuster(120)
    base = data.draw(st.sampled_from(CORPUS))
    ctype = data.draw(st.sampled_from([TEXT, OPENMETRICS]))
    scrape(loop, adjuster, base, ctype, 1_700_000_000_000)
    scrape(loop, adjuster, data.draw(mutated(base, max_steps=10)), ctype, 1_700_000_015_000)


# ---------------------------------------------------------------------------- found by fuzzing


@pytest.mark.parametrize("ctype", [TEXT, OPENMETRICS])
@pytest.mark.parametrize("line, labels", [
    ('m{le=","} 1', {"le": ","}),                     # was: labels None, the scrape crashed
    ('m{b="2",a=",x"} 1', {"b": "2", "a": ",x"}),
    ('m{a=",x",b="2"} 1', {"a": ",x", "b": "2"}),      # was: silently {"a=": "x", "b": "2"}
    ('m{a=",",b="2",c="3"} 1', {"a": ",", "b": "2", "c": "3"}),
])
def test_label_values_starting_with_a_comma(line: str, labels: dict[str, str],
                                            ctype: str) -> None:
    body = (line + "\n" + ("# EOF\n" if ctype == OPENMETRICS else "")).encode()
    [family] = textparse.parse(body, ctype)
    assert [s.labels for s in family.samples] == [labels]
    with pytest.raises(textparse.ParseError, match='label name "b" is not unique'):
        textparse.parse(b'm{b="2",b=",x"} 1\n', ctype)


@pytest.mark.parametrize("kind, count", [("summary", "-1"), ("summary", "NaN"),
                                         ("summary", "+Inf"), ("histogram", "1e20")])
def test_a_point_with_an_impossible_count_does_not_cost_the_scrape(kind: str,
                                                                   count: str) -> None:
    body = f"# TYPE s {kind}\ns_count {count}\ns_sum 1\nok_gauge 7\n".encode()
    if kind == "histogram":
        body += f's_bucket{{le="1"}} {count}\n'.encode()
    loop = _loop()
    txn, *_ = loop.append(body, TEXT, 1_700_000_000_000)
    txn.set_initial_start_times()
    request = to_request(list(txn.resources.values()), "fuzz")
    names = {m.name for rm in request.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert "ok_gauge" in names


@pytest.mark.parametrize("body", [
    b"m 1 -1\nok_gauge 7\n# EOF\n",
    b"m 1 -1.5\nok_gauge 7\n# EOF\n",
    b'# TYPE c counter\nc_total 1 # {a="b"} 1 -1\nok_gauge 7\n# EOF\n',  # an exemplar's
])
def test_an_openmetrics_time_before_1970_does_not_cost_the_scrape(body: bytes) -> None:
    txn, *_ = _loop().append(body, OPENMETRICS, 1_700_000_000_000)
    txn.set_initial_start_times()
    request = to_request(list(txn.resources.values()), "fuzz")
    names = {m.name for rm in request.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert "ok_gauge" in names
