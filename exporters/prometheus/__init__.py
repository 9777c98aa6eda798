"""The `prometheus` exporter: pipeline metrics exposed again for Prometheus to scrape."""
