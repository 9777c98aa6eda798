"""Relabeling: Prometheus's semantics case by case, and the real Prometheus as the oracle (its
metric_relabel_configs over a served body, and promtool's config validation)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from receivers.prometheus.relabel import RelabelConfig, go_lower, go_upper, relabel
from receivers.prometheus.textparse import parse
from tests.receivers.prometheus.realprom import PROMETHEUS, RealPrometheus, Served

PROMTOOL = shutil.which("promtool")


def cfg(**kwargs: Any) -> RelabelConfig:
    return RelabelConfig.model_validate(kwargs)


def run(labels: dict[str, str], *configs: dict[str, Any]) -> dict[str, str] | None:
    return relabel(labels, [cfg(**c) for c in configs])


ABC = {"a": "foo", "b": "bar", "c": "baz"}


# --- actions ------------------------------------------------------------------------------


def test_replace_with_group_references() -> None:
    assert run(ABC, {"source_labels": ["a"], "regex": "f(.*)", "target_label": "d",
                     "replacement": "ch${1}-ch${1}"}) == {**ABC, "d": "choo-choo"}
    assert run(ABC, {"source_labels": ["a", "b"], "regex": "f(.*);(.*)r", "target_label": "a",
                     "replacement": "b${1}${2}m"},
               {"source_labels": ["c", "a"], "regex": "(b).*b(.*)ba(.*)",
                "target_label": "d", "replacement": "$1$2$2$3"}) == {
        "a": "boobam", "b": "bar", "c": "baz", "d": "boooom"}


def test_replace_defaults_no_match_and_deletion() -> None:
    # defaults: regex (.*), replacement $1, separator ";"
    assert run(ABC, {"source_labels": ["a", "b"], "target_label": "ab"})["ab"] == "foo;bar"
    assert run(ABC, {"source_labels": ["a"], "regex": "no-match", "target_label": "d"}) == ABC
    # the regex is anchored at both ends: "f" does not match "foo"
    assert run(ABC, {"source_labels": ["a"], "regex": "f", "target_label": "d"}) == ABC
    # an empty result deletes the target; "$2" names no group and is empty
    assert run({"a": "foo", "f": "baz"}, {"source_labels": ["a"], "regex": "(f).*",
                                          "target_label": "$1", "replacement": "$2"}) == {
        "a": "foo"}
    # a target expanding to "" is no label name: nothing happens
    assert run(ABC, {"source_labels": ["a"], "regex": "x*(.*)", "target_label": "${9}",
                     "replacement": "v"}) == ABC
    # a missing source label reads as "", and the static replacement is written
    assert run({}, {"target_label": "env", "replacement": "prod"}) == {"env": "prod"}


@pytest.mark.parametrize("replacement,expected", [
    ("$1x", ""),  # Go reads "$1x" as the group named "1x"
    ("${1}x", "fx"),
    ("$2", "oo"),
    ("${name}-$name", "oo-oo"),
    ("$$1", "$1"),
    ("$", "$"), ("$ 1", "$ 1"), ("${1", "${1"), ("${}", "${}"),
    ("$01", ""),  # a leading zero is no number: the (missing) group named "01"
    ("$0", "foo"),
    ("$3", ""), ("$123456789", ""), ("$1$2", "foo"),
    ("${1x}", "X"),  # a group may be named 1x
])
def test_expansion_like_go_regexp_expand(replacement: str, expected: str) -> None:
    got = run({"a": "foo"}, {"source_labels": ["a"], "regex": "(f)(?P<name>o*)(?P<1x>)",
                             "target_label": "t", "replacement": replacement})
    if expected == "X":
        assert got == {"a": "foo"}  # the "1x" group matched the empty string
    else:
        assert got.get("t", "") == expected


def test_keep_drop() -> None:
    keep = {"source_labels": ["a"], "regex": ".*o.*", "action": "keep"}
    drop = {**keep, "action": "drop"}
    assert run(ABC, keep) == ABC and run(ABC, drop) is None
    assert run({"a": "bar"}, keep) is None and run({"a": "bar"}, drop) == {"a": "bar"}
    # drop on a later step still drops; earlier replaced labels do not leak
    assert run(ABC, {"source_labels": ["a"], "target_label": "x"}, drop) is None


def test_keepequal_dropequal() -> None:
    labels = {"a": "foo", "b": "foo", "c": "bar"}
    assert run(labels, {"source_labels": ["a"], "target_label": "b", "action": "keepequal"})
    assert run(labels, {"source_labels": ["a"], "target_label": "c",
                        "action": "keepequal"}) is None
    assert run(labels, {"source_labels": ["a"], "target_label": "b",
                        "action": "dropequal"}) is None
    assert run(labels, {"source_labels": ["a"], "target_label": "c", "action": "dropequal"})
    # a missing label equals the empty join of missing sources
    assert run({}, {"source_labels": ["x"], "target_label": "y", "action": "keepequal"}) == {}


def test_hashmod_matches_prometheus_shards() -> None:
    # values Prometheus's own tests and code give: md5, last 8 bytes, big-endian, mod
    assert run(ABC, {"source_labels": ["c"], "target_label": "d", "modulus": 1000,
                     "action": "hashmod"})["d"] == "976"
    assert run({"a": "foo\nbar"}, {"source_labels": ["a"], "target_label": "b",
                                   "modulus": 1000, "action": "hashmod"})["b"] == "734"
    assert run({"__address__": "10.132.183.40:80"},
               {"source_labels": ["__address__"], "target_label": "shard", "modulus": 3,
                "action": "hashmod"})["shard"] == "1"


def test_labelmap_labeldrop_labelkeep() -> None:
    meta = {"__meta_kubernetes_pod_label_app": "web", "__meta_kubernetes_pod_label_tier": "fe",
            "job": "x"}
    assert run(meta, {"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap"}) == {
        **meta, "app": "web", "tier": "fe"}
    assert run(meta, {"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap",
                      "replacement": "k8s_${1}"})["k8s_app"] == "web"
    assert run(meta, {"regex": "__meta_.*", "action": "labeldrop"}) == {"job": "x"}
    assert run(meta, {"regex": "__meta_.*", "action": "labelkeep"}) == {
        k: v for k, v in meta.items() if k != "job"}


def test_labelmap_collisions_follow_prometheus_builder_order() -> None:
    labels = {"__meta_a_x": "1", "__meta_b_x": "2"}
    step = {"regex": "__meta_[ab]_(.*)", "action": "labelmap"}
    assert run(labels, step)["x"] == "2"  # base labels in name order: the last wins
    # a label changed by an earlier step is visited after the unchanged ones
    changed = {"source_labels": ["__meta_a_x"], "target_label": "__meta_a_x",
               "replacement": "3"}
    assert run(labels, changed, step)["x"] == "3"


def test_lowercase_uppercase_map_rune_by_rune() -> None:
    labels = {"a": "AbC-ßİΣΑΣ"}
    assert run(labels, {"source_labels": ["a"], "target_label": "l", "action": "lowercase"})[
        "l"] == "abc-ßiσασ"
    assert run(labels, {"source_labels": ["a"], "target_label": "u", "action": "uppercase"})[
        "u"] == "ABC-ßİΣΑΣ"
    assert go_upper("ﬀᾳ") == "ﬀᾼ" and go_lower("ǅ") == "ǆ"


def test_empty_values_are_absent_and_input_is_not_mutated() -> None:
    labels = {"a": "1", "empty": ""}
    before = dict(labels)
    assert relabel(labels, []) == {"a": "1"}
    out = run(labels, {"source_labels": ["a"], "target_label": "a", "replacement": "2"})
    assert out == {"a": "2"} and labels == before
    out["new"] = "x"
    assert labels == before


# --- Go regular expressions (their syntax and meaning: tests/gateway/test_goregex.py) -------


@pytest.mark.parametrize("regex,value,matches", [
    (".*", "multi\nline", True),  # anchored as ^(?s:...)$
    ("a$", "a\n", False),  # Go's $ is the end of the text
    ("(?i)ab", "AB", True), ("a{,2}", "a{,2}", True), ("[[:alpha:]]+", "ab1", False),
    ("a)|(b", "a", True), ("a)|(b", "xb", True),  # closes the anchoring group, as in Go
])
def test_regexes_are_go_regexes_anchored_as_prometheus_does(regex: str, value: str,
                                                            matches: bool) -> None:
    got = run({"v": value}, {"source_labels": ["v"], "regex": regex, "action": "keep"})
    assert (got is not None) == matches


@pytest.mark.parametrize("regex,message", [
    ("(?=a)", "invalid or unsupported Perl syntax"),
    ("(a", "missing closing ) at position 2 in `(a`"),
    ("\\", "missing closing )"),  # as in Go: it escapes the anchoring group's ")"
])
def test_invalid_regex_is_a_config_error(regex: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"invalid regex: {message}")):
        cfg(source_labels=["a"], regex=regex, action="keep")


# --- config validation --------------------------------------------------------------------


@pytest.mark.parametrize("config,message", [
    ({"action": "replace"}, "requires 'target_label'"),
    ({"action": "hashmod", "target_label": "x"}, "requires non-zero modulus"),
    ({"action": "hashmod", "modulus": 2}, "requires 'target_label'"),
    ({"action": "lowercase", "target_label": "x", "replacement": "y"},
     "'replacement' can not be set"),
    ({"action": "keepequal", "target_label": "x", "regex": "(.*)"},
     "requires only 'source_labels' and `target_label`"),
    ({"action": "dropequal", "target_label": "x", "separator": ","}, "requires only"),
    ({"action": "labeldrop", "source_labels": ["a"]}, "requires only 'regex'"),
    ({"action": "labelkeep", "target_label": "a"}, "requires only 'regex'"),
    ({"action": "labelmap", "replacement": ""}, "invalid 'replacement'"),
    ({"action": "explode"}, 'unknown relabel action "explode"'),
    ({"action": ""}, 'unknown relabel action ""'),
    ({"source_labels": [""], "target_label": "x"}, "not a valid label name"),
    ({"modulus": -1}, "greater than or equal to 0"),
    ({"target_label": "x", "extra": 1}, "Extra inputs are not permitted"),
])
def test_validation_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        cfg(**config)


def test_yaml_forms() -> None:
    c = RelabelConfig.model_validate(yaml.safe_load(
        "source_labels: [code]\nregex: 200\naction: Keep\nreplacement: ~\n"))
    assert (c.regex, c.action, c.replacement) == ("200", "keep", "")
    assert relabel({"code": "200"}, [c]) and relabel({"code": "2000"}, [c]) is None
    assert cfg(regex=None, action="keep").regex == ""  # Go's null regex: matches only ""


def test_legacy_name_checks() -> None:
    cfg(target_label="${1}_x", source_labels=["a"]).check_legacy_names()
    for bad in ({"target_label": "my.label"}, {"target_label": "x", "action": "hashmod",
                                               "modulus": 2, "source_labels": ["a.b"]}):
        with pytest.raises(ValueError, match="invalid 'target_label'|not a valid label name"):
            cfg(**bad).check_legacy_names()
    # UTF-8 (Prometheus 3's default) takes dotted names; legacy mode leaves them alone
    step = {"source_labels": ["a"], "target_label": "$1.x", "regex": "(.*)"}
    assert run({"a": "v"}, step) == {"a": "v", "v.x": "v"}
    assert relabel({"a": "v"}, [cfg(**step)], legacy_names=True) == {"a": "v"}


# --- the real Prometheus as the oracle --------------------------------------------------------

BODY = ('# TYPE http_requests_total counter\n'
        'http_requests_total{method="GET",code="200",path="/api/v1/Users"} 10\n'
        'http_requests_total{method="POST",code="500",path="/login"} 2\n'
        'go_goroutines 8\nprocess_open_fds{x_y="a",x_z="b"} 3\n')

# Each job: metric_relabel_configs that run on the body's series plus job and instance.
ORACLE_JOBS: list[list[dict[str, Any]]] = [
    [{"source_labels": ["path"], "regex": "/api/(v\\d+)/(?P<thing>\\w+)", "target_label": "api",
      "replacement": "$1x|${1}x|$thing|$$|${2}|$3"}],
    [{"source_labels": ["__name__", "code"], "target_label": "shard", "modulus": 7,
      "action": "hashmod"},
     {"source_labels": ["instance"], "target_label": "ishard", "modulus": 13,
      "action": "hashmod"}],
    [{"regex": "x_(.*)", "action": "labelmap", "replacement": "y_$1"},
     {"regex": "(x)_(.*)", "action": "labelmap", "replacement": "collide"}],
    [{"source_labels": ["path"], "target_label": "lower", "action": "lowercase"},
     {"source_labels": ["method"], "target_label": "method", "action": "uppercase"}],
    [{"source_labels": ["__name__"], "regex": "go_.*|process_.*", "action": "drop"}],
    [{"source_labels": ["__name__"], "regex": "(?i)HTTP_.*", "action": "keep"},
     {"regex": "path|code", "action": "labeldrop"}],
    [{"regex": "__name__|job|instance|m.*", "action": "labelkeep"}],
    [{"source_labels": ["code"], "regex": "[[:digit:]]{1}0{2}", "target_label": "ok",
      "replacement": "yes"},
     {"source_labels": ["method"], "regex": "\\x47ET|\\120OST", "target_label": "method",
      "replacement": ""}],
    [{"source_labels": ["code"], "target_label": "code", "action": "keepequal"},
     {"source_labels": ["method"], "target_label": "code", "action": "dropequal"}],
]


@pytest.fixture(scope="module")
def prometheus_series(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[str, dict[str, list[dict[str, str]]]]]:
    if not PROMETHEUS:
        pytest.skip("needs /usr/bin/prometheus (Debian package prometheus; make system-deps)")
    served = Served({"/metrics": (BODY.encode(), "text/plain; version=0.0.4")})
    prom = RealPrometheus(tmp_path_factory.mktemp("prom-relabel"), [
        {"job_name": f"r{i}", "metric_relabel_configs": steps,
         "static_configs": [{"targets": [served.address]}]}
        for i, steps in enumerate(ORACLE_JOBS)])
    try:
        prom.wait_scraped()
        series = {}
        for i in range(len(ORACLE_JOBS)):
            found = prom.query("/api/v1/series", **{"match[]": f'{{job="r{i}"}}'})
            series[f"r{i}"] = [s for s in found  # type: ignore[union-attr]
                               if not s["__name__"].startswith(("scrape_", "up"))]
        yield served.address, series
    finally:
        prom.close()
        served.close()


@pytest.mark.parametrize("job", range(len(ORACLE_JOBS)))
def test_metric_relabeling_like_prometheus(prometheus_series: tuple, job: int) -> None:
    address, series = prometheus_series
    configs = [cfg(**step) for step in ORACLE_JOBS[job]]
    expected = sorted(sorted(s.items()) for s in series[f"r{job}"])
    ours = []
    for family in parse(BODY.encode(), "text/plain"):
        for sample in family.samples:
            labels = {**sample.labels, "__name__": sample.name, "job": f"r{job}",
                      "instance": address}
            out = relabel(labels, configs)
            if out is not None:
                ours.append(sorted(out.items()))
    assert sorted(ours) == expected
    assert expected  # every job leaves something to compare


PROMTOOL_CASES: list[dict[str, Any]] = [
    {"source_labels": ["a"], "target_label": "b"},
    {"source_labels": ["a"], "action": "replace"},
    {"source_labels": ["a"], "target_label": "b", "action": "hashmod"},
    {"source_labels": ["a"], "target_label": "b", "action": "lowercase", "replacement": "x"},
    {"source_labels": ["a"], "target_label": "b", "action": "keepequal", "regex": "(.*)"},
    {"source_labels": ["a"], "target_label": "b", "action": "keepequal"},
    {"regex": "a.*", "action": "labeldrop", "source_labels": ["a"]},
    {"regex": "a.*", "action": "labelkeep"},
    {"regex": "(a.*", "action": "labeldrop"},
    {"regex": "a(?=b)", "action": "labeldrop"},
    {"regex": "a**", "action": "labeldrop"},
    {"regex": "a{,3}\\d[[:alpha:]]", "action": "labeldrop"},
    {"source_labels": ["a"], "action": "Drop"},
    {"action": "nuke"},
    {"regex": "(.+)", "action": "labelmap", "replacement": ""},
]


@pytest.mark.skipif(not PROMTOOL, reason="needs promtool (Debian package prometheus)")
def test_validation_agrees_with_promtool(tmp_path: Path) -> None:
    for i, step in enumerate(PROMTOOL_CASES):
        path = tmp_path / f"p{i}.yml"
        path.write_text(yaml.safe_dump({"scrape_configs": [{
            "job_name": "j", "static_configs": [{"targets": ["127.0.0.1:1"]}],
            "metric_relabel_configs": [step]}]}))
        check = subprocess.run([PROMTOOL or "", "check", "config", str(path)],
                               capture_output=True, text=True, timeout=30)
        try:
            cfg(**step)
            ours = True
        except ValidationError:
            ours = False
        assert ours == (check.returncode == 0), (step, check.stdout, check.stderr)
