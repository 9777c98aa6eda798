"""Factory of the `fluentforward` receiver (`fluent_forward`, the Collector's newer name, too)."""

from gateway.component import Factory, Kind
from gateway.signals import Signal
from receivers.fluentforward.config import FluentForwardConfig
from receivers.fluentforward.receiver import FluentForwardReceiver

factory = Factory(kind=Kind.RECEIVER, type="fluentforward", config_model=FluentForwardConfig,
                  create=FluentForwardReceiver, signals=frozenset({Signal.LOGS}),
                  aliases=("fluent_forward",))
