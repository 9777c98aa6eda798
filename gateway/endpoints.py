"""`host:port` endpoints as Collector configs write them ("0.0.0.0:4317", "[::1]:4318", ":8888")."""

from __future__ import annotations


def split_host_port(endpoint: str) -> tuple[str, int]:
    """(host, port); an empty host means every interface."""
    host, _, port = endpoint.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def local_host(endpoint: str) -> tuple[str, int]:
    """Where a client on this machine reaches a listener bound to `endpoint`."""
    host, port = split_host_port(endpoint)
    return ("127.0.0.1" if host in ("0.0.0.0", "::") else host), port
