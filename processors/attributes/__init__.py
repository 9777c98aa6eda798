"""`attributes` processor: actions on span, log record and data point attributes."""
