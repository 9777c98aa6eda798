"""Factory of the `otlp` receiver."""

from gateway.component import Factory, Kind
from receivers.otlp.config import OtlpConfig
from receivers.otlp.receiver import OtlpReceiver

factory = Factory(kind=Kind.RECEIVER, type="otlp", config_model=OtlpConfig, create=OtlpReceiver)
