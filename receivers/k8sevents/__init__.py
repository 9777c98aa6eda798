"""The `k8s_events` receiver: Kubernetes events as OTLP log records, each occurrence once."""
