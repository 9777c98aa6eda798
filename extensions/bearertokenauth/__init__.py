"""`bearertokenauth` extension: bearer-token authentication of the OTLP receivers' clients."""
