"""Unit tests: gRPC status -> HTTP problem mapping, and settings validation."""

from __future__ import annotations

import asyncpg
import grpc
import httpx
import orjson
import pytest
import redis.exceptions
from fastapi import FastAPI
from pydantic import ValidationError

from gateway.errors import install_error_handlers, problem_for_rpc_error
from gateway.settings import GatewaySettings


def rpc_error(code: grpc.StatusCode, details: str = "the detail", error_code: str | None = None):
    trailers = grpc.aio.Metadata(("mcloud-error-code", error_code)) if error_code else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details=details)


@pytest.mark.parametrize(
    ("code", "status", "default_code"),
    [
        (grpc.StatusCode.NOT_FOUND, 404, "not_found"),
        (grpc.StatusCode.ALREADY_EXISTS, 409, "already_exists"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_argument"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "failed_precondition"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "permission_denied"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "unauthenticated"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "resource_exhausted"),
        (grpc.StatusCode.UNAVAILABLE, 503, "service_unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "upstream_timeout"),
        (grpc.StatusCode.INTERNAL, 500, "internal"),
        (grpc.StatusCode.UNKNOWN, 500, "internal"),
    ],
)
def test_grpc_status_maps_to_http(code, status, default_code):
    response = problem_for_rpc_error(rpc_error(code))
    body = orjson.loads(response.body)
    assert response.status_code == status == body["status"]
    assert body["code"] == default_code
    assert response.media_type == "application/problem+json"
    if status >= 500:
        assert body["detail"] != "the detail"  # service text never reaches clients on 5xx
    else:
        assert body["detail"] == "the detail"
    if status in (429, 503):
        assert response.headers["retry-after"] == "1"


def test_error_code_comes_from_the_trailer():
    body = orjson.loads(
        problem_for_rpc_error(
            rpc_error(grpc.StatusCode.FAILED_PRECONDITION, error_code="points_insufficient")
        ).body
    )
    assert body["code"] == "points_insufficient"
    assert body["type"] == "/problems/points_insufficient"


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "Connection refused"),
    asyncpg.CannotConnectNowError("the database system is shutting down"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    redis.exceptions.ConnectionError("Error 111 connecting"),
])
async def test_an_unreachable_database_or_valkey_is_a_503_with_retry_after_not_a_crash(error):
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/down")
    async def down():
        raise error

    # the transport re-raises what escapes the app: an outage must be answered inside it, not logged as a crash
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        r = await client.get("/down")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "dependency_unavailable"


def test_settings_defaults_and_targets():
    s = GatewaySettings(database_url="postgresql://u@h/mcloud_gateway")
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
    assert s.targets() == {
        "identity": "127.0.0.1:50051",
        "loyalty": "127.0.0.1:50052",
        "journey": "127.0.0.1:50053",
        "recommend": "127.0.0.1:50054",
        "messaging": "127.0.0.1:50055",
    }
    assert (s.max_call_bytes, s.max_batch_bytes) == (32 * 1024, 500 * 1024)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"database_url": "mysql://x/y"}, "postgresql://"),
        ({"redis_url": "http://x"}, "redis://"),
        ({"identity_target": "no port"}, "host:port"),
        ({"rate_limit_per_second": 0}, "greater than 0"),
        ({"log_level": "LOUD"}, "DEBUG, INFO"),
        ({"max_call_bytes": 600_000}, "max_call_bytes"),
    ],
)
def test_settings_refuse_bad_values_with_clear_messages(overrides, message):
    values = {"database_url": "postgresql://u@h/db", **overrides}
    with pytest.raises(ValidationError, match=message):
        GatewaySettings(**values)


def test_settings_read_the_gateway_env_prefix(monkeypatch):
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgresql://u@h/gw")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_PER_SECOND", "5")
    s = GatewaySettings()
    assert s.database_url == "postgresql://u@h/gw" and s.rate_limit_per_second == 5
