"""Collector-shaped configuration: YAML in, typed component configs and pipelines out."""

from gateway.config.loader import GatewayConfig, PipelineSpec, load_config, load_config_text

__all__ = ["GatewayConfig", "PipelineSpec", "load_config", "load_config_text"]
