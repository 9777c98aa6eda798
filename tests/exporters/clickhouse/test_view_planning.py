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
    # resource, span, each event's, each link's attributes (span-level maps are not shared:
    # copying their KeyValues costs more execution time than the planning it saves)
    (Signal.TRACES, "traces", 4),
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

