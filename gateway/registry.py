"""The one module that lists the components: configuration type name → factory."""

from __future__ import annotations

from functools import cache

from gateway.component import Factory, Kind


@cache
def factories() -> dict[Kind, dict[str, Factory]]:
    from exporters.clickhouse.factory import factory as clickhouse
    from processors.batch.factory import factory as batch
    from receivers.otlp.factory import factory as otlp

    table: dict[Kind, dict[str, Factory]] = {kind: {} for kind in Kind}
    for f in (otlp, batch, clickhouse):
        for name in (f.type, *f.aliases):
            table[f.kind][name] = f
    return table


def lookup(kind: Kind, type_name: str) -> Factory | None:
    return factories()[kind].get(type_name)


def types(kind: Kind) -> list[str]:
    return sorted(factories()[kind])
