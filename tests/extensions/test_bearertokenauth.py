"""The `bearertokenauth` extension as the OTLP receivers use it: which header values pass, the
reasons given for those that do not, tokens from a file that changes, and no token in a log."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from extensions.bearertokenauth.config import BearerTokenAuthConfig
from extensions.bearertokenauth.extension import BearerTokenAuth
from gateway import registry
from gateway.component import ComponentID, Host, Kind
from gateway.errors import ConfigError
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from receivers.otlp.common import Ingest
from receivers.otlp.config import HttpConfig
from receivers.otlp.http import OtlpHttpServer


def auth(**cfg: Any) -> BearerTokenAuth:
    return BearerTokenAuth(ComponentID("bearertokenauth"), BearerTokenAuthConfig(**cfg))


def refusal(a: BearerTokenAuth, headers: Any) -> str:
    try:
        a.authenticate(headers)
    except PermissionError as exc:
        return str(exc)
    return ""


def test_registered() -> None:
    assert registry.lookup(Kind.EXTENSION, "bearertokenauth") is not None


def test_bearer_scheme_and_token_must_match_exactly() -> None:
    a = auth(token="s3cret")
    assert refusal(a, {"authorization": "Bearer s3cret"}) == ""
    for value in ("bearer s3cret", "Bearer  s3cret", "s3cret", "Bearer s3cre", "Bearer s3cretX",
                  "Basic s3cret", "Bearer s3cret "):
        assert refusal(a, {"authorization": value}) == "scheme or token does not match", value
    assert refusal(a, {}) == "missing or empty authorization header: Authorization"
    assert refusal(a, {"authorization": ""}) == "missing or empty authorization header: " \
                                                "Authorization"
    assert a.challenge == 'Bearer realm="otelgw"'


def test_http_headers_are_case_insensitive() -> None:
    a = auth(token="s3cret")
    headers = CIMultiDictProxy(CIMultiDict([("AUTHORIZATION", "Bearer s3cret")]))
    assert refusal(a, headers) == ""


def test_custom_header_without_scheme_and_several_tokens() -> None:
    a = auth(header="X-Api-Key", scheme="", tokens=["old", "new"])
    assert refusal(a, {"x-api-key": "old"}) == ""
    assert refusal(a, {"x-api-key": "new"}) == ""
    assert refusal(a, {"x-api-key": "Bearer new"}) == "scheme or token does not match"
    assert refusal(a, {"authorization": "new"}) == "missing or empty authorization header: " \
                                                   "X-Api-Key"


def test_non_ascii_header_values_are_refused_not_crashed() -> None:
    a = auth(token="s3cret")
    assert refusal(a, {"authorization": "Bearer s3crét\udcff"}) == "scheme or token does not " \
                                                                   "match"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_tokens_from_a_file_follow_its_changes(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens"
    path.write_text("first\n\n  second  \n")
    a = auth(filename=str(path), token="ignored")

    async def scenario() -> list[str]:
        await a.start(Host(SelfTelemetry()))
        seen = [refusal(a, {"authorization": v}) for v in
                ("Bearer first", "Bearer second", "Bearer ", "Bearer ignored")]
        tmp = tmp_path / "tokens.new"
        tmp.write_text("third\n")
        os.replace(tmp, path)
        for _ in range(40):
            if refusal(a, {"authorization": "Bearer third"}) == "":
                break
            await asyncio.sleep(0.1)
        seen += [refusal(a, {"authorization": v}) for v in ("Bearer third", "Bearer first")]
        path.unlink()  # gone for a while: the last tokens stay
        await asyncio.sleep(1.3)
        seen.append(refusal(a, {"authorization": "Bearer third"}))
        await a.shutdown()
        return seen

    with caplog.at_level(logging.DEBUG):
        seen = run(scenario())
    no = "scheme or token does not match"
    assert seen == ["", "", no, no, "", no, ""]
    log = caplog.text
    assert "loaded 2 token(s)" in log and "loaded 1 token(s)" in log
    assert "cannot read" in log
    for token in ("first", "second", "third"):
        assert token not in log.replace(str(tmp_path), "")


def test_missing_file_stops_the_start(tmp_path: Path) -> None:
    a = auth(filename=str(tmp_path / "absent"))
    with pytest.raises(ConfigError) as err:
        run(a.start(Host(SelfTelemetry())))
    assert err.value.problems == [f"extensions::bearertokenauth::filename: cannot read "
                                  f"{tmp_path / 'absent'}: No such file or directory"]
    run(a.shutdown())  # safe after a failed start


def test_config_never_shows_the_token() -> None:
    for cfg in (BearerTokenAuthConfig(token="s3cret"),
                BearerTokenAuthConfig(tokens=["s3cret", "other"])):
        assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.model_dump())


def test_http_request_params_and_cors_on_the_refusal() -> None:
    """`auth.request_params` hands query parameters to the authenticator as headers, and a
    browser client can read the 401 (CORS headers on it)."""
    class Sink:
        async def consume(self, payload: Any) -> None:
            pass

    cfg = HttpConfig(endpoint="127.0.0.1:0", cors={"allowed_origins": ["https://app"]},
                     auth={"authenticator": "bearertokenauth", "request_params": ["api_key"]})
    a = auth(header="api_key", scheme="", token="s3cret")

    async def scenario() -> list[tuple[int, str]]:
        ingest = Ingest(ComponentID("otlp"), {Signal.TRACES: Sink()}, SelfTelemetry())
        server = OtlpHttpServer(cfg, ingest, a)
        await server.start()
        out = []
        try:
            async with aiohttp.ClientSession() as session:
                for query in ("?api_key=s3cret", "?api_key=nope", ""):
                    async with session.post(
                            f"http://127.0.0.1:{server.port}/v1/traces{query}", data=b"",
                            headers={"Content-Type": "application/x-protobuf",
                                     "Origin": "https://app"}) as resp:
                        out.append((resp.status,
                                    resp.headers.get("Access-Control-Allow-Origin", "")))
        finally:
            await server.stop()
        return out

    assert run(scenario()) == [(200, "https://app"), (401, "https://app"), (401, "https://app")]
