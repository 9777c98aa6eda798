"""The `prometheus` receiver: scrapes targets the way Prometheus does and emits OTLP metrics."""
