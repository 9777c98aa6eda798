"""ClickHouse plans every flattening view again on each INSERT, and that cost grows with the
instances of the AnyValue rendering a view's SELECT holds (anyvalue.py). These tests keep the
number of instances at most where it was brought down; the values themselves are checked end to
end by test_values.py."""

from __future__ import annotations

import pytest

from exporters.clickhouse.anyvalue import as_string
from exporters.clickhouse.flatten import FLATTENINGS
from gateway.signals import Signal

# What every instance of as_string holds once: the text of Go's NaN rendering.
MARK = "'json: unsupported value: NaN'"


def renderings(sql: str) -> int:
    return sql.count(MARK)


def test_one_rendering_holds_the_mark_once() -> None:
    assert renderings(as_string("a.value")) == 1


@pytest.mark.parametrize(("signal", "target", "expected"), [
    # resource, span; events' and links' share one (the resource and span maps are not shared:
    # copying their KeyValues costs more execution time than the planning it saves)
    (Signal.TRACES, "traces", 3),
    # resource and scope share one; the record's
    (Signal.LOGS, "logs", 2),
    # resource and scope share one; the point's; each exemplar's
    (Signal.METRICS, "metrics_stage", 3),
])
def test_attribute_renderings_per_view(signal: Signal, target: str, expected: int) -> None:
    f = FLATTENINGS[signal]
    t = next(t for t in (*f.targets, *([f.stage] if f.stage else [])) if t.table == target)
    assert renderings(t.select("src")) <= expected


def test_metric_target_views_render_nothing() -> None:
    for t in FLATTENINGS[Signal.METRICS].targets:
        assert renderings(t.select("src")) == 0, t.table


def test_shared_maps_give_each_part_its_own_maps_back(tmp_path) -> None:
    """Single KeyValue arrays and arrays of them (events, links), mixed: each part gets its own
    maps, however many the parts before it had."""
    from exporters.clickhouse.anyvalue import SharedMaps, attributes_type
    from exporters.clickhouse.engines.embedded import EmbeddedEngine
    from exporters.clickhouse.tuple_access import tuple_elements

    def kvs(*pairs: tuple[str, str]) -> str:
        items = ", ".join(f"tuple('{k}', tuple('string_value', '{v}', false, 0, 0, '', "
                          "tuple([]), tuple([])))" for k, v in pairs)
        return f"CAST([{items}] AS {attributes_type()})"

    maps = SharedMaps("m")
    parts = [maps.add(kvs(("b", "2"), ("a", "1"))),
             maps.add(f"[{kvs(('x', '1'))}, {kvs()}, {kvs(('z', '3'))}]", each=True),
             maps.add(kvs(("c", "3"))),
             maps.add(f"[{kvs()}]", each=True),
             maps.add(f"[{kvs(('y', '9'))}]", each=True)]
    inner = ", ".join([f"{maps.expr()} AS m", *(f"{e} AS `{n}`" for n, e in maps.lengths())])
    outer = ", ".join(f"{p} AS p{i}" for i, p in enumerate(parts))
    engine = EmbeddedEngine(str(tmp_path / "store"))
    try:
        got = engine.query(tuple_elements(f"SELECT {outer} FROM (SELECT {inner})"), "TSV")
    finally:
        engine.close()
    assert got.decode().rstrip("\n").split("\t") == [
        "{'a':'1','b':'2'}", "[{'x':'1'},{},{'z':'3'}]", "{'c':'3'}", "[{}]", "[{'y':'9'}]"]
