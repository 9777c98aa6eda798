"""`resource` processor: actions on resource attributes."""
