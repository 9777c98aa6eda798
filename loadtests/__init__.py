"""Load tests (locust) and the benchmark harness; payload generators shared with the tests."""
