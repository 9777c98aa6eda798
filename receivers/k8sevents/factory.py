"""Factory of the `k8s_events` receiver (the Collector's type name; `k8sevents` too)."""

from gateway.component import Factory, Kind
from gateway.signals import Signal
from receivers.k8sevents.config import K8sEventsConfig
from receivers.k8sevents.receiver import K8sEventsReceiver

factory = Factory(kind=Kind.RECEIVER, type="k8s_events", config_model=K8sEventsConfig,
                  create=K8sEventsReceiver, signals=frozenset({Signal.LOGS}),
                  aliases=("k8sevents",))
