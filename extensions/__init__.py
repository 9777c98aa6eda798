"""Extensions: components beside the pipelines (health check)."""
