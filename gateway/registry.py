"""The one module that lists the components: configuration type name → factory."""

from __future__ import annotations

import importlib
from functools import cache

from gateway.component import Factory, Kind

# Each module defines `factory`. One line per component; kept sorted within a kind.
_FACTORY_MODULES = (
    "receivers.fluentforward.factory",
    "receivers.k8sevents.factory",
    "receivers.otlp.factory",
    "receivers.prometheus.factory",
    "processors.attributes.factory",
    "processors.batch.factory",
    "processors.k8sattributes.factory",
    "processors.memory_limiter.factory",
    "processors.resource.factory",
    "exporters.clickhouse.factory",
    "exporters.prometheus.factory",
    "extensions.bearertokenauth.factory",
    "extensions.file_storage.factory",
    "extensions.health_check.factory",
)


@cache
def factories() -> dict[Kind, dict[str, Factory]]:
    table: dict[Kind, dict[str, Factory]] = {kind: {} for kind in Kind}
    for module in _FACTORY_MODULES:
        f: Factory = importlib.import_module(module).factory
        for name in (f.type, *f.aliases):
            table[f.kind][name] = f
    return table


def lookup(kind: Kind, type_name: str) -> Factory | None:
    return factories()[kind].get(type_name)


def types(kind: Kind) -> list[str]:
    return sorted(factories()[kind])
