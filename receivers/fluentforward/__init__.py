"""`fluentforward` receiver: Fluent Bit / Fluentd forward protocol (TCP, UDP heartbeat) to logs."""
