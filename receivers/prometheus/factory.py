"""Factory of the `prometheus` receiver."""

from gateway.component import Factory, Kind
from gateway.signals import Signal
from receivers.prometheus.config import PrometheusReceiverConfig
from receivers.prometheus.receiver import PrometheusReceiver

factory = Factory(kind=Kind.RECEIVER, type="prometheus", config_model=PrometheusReceiverConfig,
                  create=PrometheusReceiver, signals=frozenset({Signal.METRICS}))
