"""otelgw core: component ids, the consume contract, config, pipeline graph, lifecycle, CLI.

The core never imports a component except in `gateway.registry`, the one module that lists them.
"""
