"""Fuzz target: relabel configs (receivers/prometheus/relabel.py, gateway/goregex.py) and
relabel() over random label sets.

Properties: a config either validates or raises ValueError (pydantic's ValidationError is one),
nothing else, whatever its regex or template; a valid config relabels any label set into a dict
of non-empty strings or None, never an exception; keep and drop (keepequal and dropequal) with
the same settings disagree on every label set; hashmod writes a number below the modulus.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from receivers.prometheus.relabel import RelabelConfig, relabel

ACTIONS = ["replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap",
           "labeldrop", "labelkeep", "lowercase", "uppercase", "Replace", "bogus"]
label_names = st.one_of(st.sampled_from(["__name__", "job", "instance", "__address__", "a", "b",
                                         "__meta_kubernetes_pod_label_app", "é", ""]),
                        st.text(max_size=6))
label_values = st.one_of(st.sampled_from(["", "x", "node_cpu_seconds_total", "10.0.0.1:9100",
                                          "a;b", "\n", "ß", "İ", "ǅ"]),
                         st.text(max_size=10))
regexes = st.one_of(
    st.sampled_from(["(.*)", ".*", "(.+):(\\d+)", "a|b", "(?i)NODE_.*", "(?P<n>x)y", "[[:alpha:]]+",
                     "\\pL+", "(?s:.)", "x{2,}", "(", "a{1001}", "\\Q.\\E", "[^\\x00-\\x{10FFFF}]",
                     "(?=x)", "\\1", "a**", "[z-a]", "\\C", "(?U)a+", "\\b", "$", "^"]),
    st.text(alphabet="()[]{}|*+?.^$\\-:,dswpPLQEaxz0129=!<>", max_size=12))
templates = st.one_of(st.sampled_from(["$1", "${1}", "$n", "${n}x", "$$", "$", "${", "$1x",
                                       "x_$1_${2}", "", "$0", "${n", "$é"]),
                      st.text(alphabet="$${}1n_ax", max_size=8))


@st.composite
def configs(draw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"action": draw(st.sampled_from(ACTIONS))}
    if draw(st.booleans()):
        cfg["source_labels"] = draw(st.lists(label_names, max_size=3))
    for key, strategy in [("regex", regexes), ("separator", st.sampled_from([";", "", ",", "é"])),
                          ("target_label", st.one_of(label_names, templates)),
                          ("replacement", templates),
                          ("modulus", st.integers(-1, 2**64))]:
        if draw(st.booleans()):
            cfg[key] = draw(strategy)
    return cfg


label_sets = st.dictionaries(label_names, label_values, max_size=6)


def build(cfg: dict[str, Any]) -> RelabelConfig | None:
    try:
        return RelabelConfig.model_validate(cfg)
    except ValueError:
        return None


@given(cfgs=st.lists(configs(), min_size=1, max_size=4), labels=label_sets,
       legacy=st.booleans())
def test_random_configs_and_label_sets(cfgs: list[dict[str, Any]], labels: dict[str, str],
                                       legacy: bool) -> None:
    built = [c for c in map(build, cfgs) if c is not None]
    if legacy:
        for c in built:
            try:
                c.check_legacy_names()
            except ValueError:
                pass
    before = dict(labels)
    out = relabel(labels, built, legacy_names=legacy)
    assert labels == before  # not mutated
    if out is not None:
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in out.items())


@given(cfg=configs(), labels=label_sets)
def test_keep_and_drop_disagree(cfg: dict[str, Any], labels: dict[str, str]) -> None:
    for keep, drop in (("keep", "drop"), ("keepequal", "dropequal")):
        a = build({**cfg, "action": keep})
        b = build({**cfg, "action": drop})
        if a is None or b is None:
            continue
        assert (relabel(labels, [a]) is None) != (relabel(labels, [b]) is None)


@given(labels=label_sets, sources=st.lists(label_names.filter(bool), min_size=1, max_size=3),
       modulus=st.integers(1, 2**64))
def test_hashmod_is_below_the_modulus(labels: dict[str, str], sources: list[str],
                                      modulus: int) -> None:
    cfg = build({"action": "hashmod", "source_labels": sources, "target_label": "shard",
                 "modulus": modulus})
    assume(cfg is not None)
    out = relabel(labels, [cfg])
    assert out is not None and 0 <= int(out["shard"]) < modulus
