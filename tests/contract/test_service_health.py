"""Every service serves gRPC health (overall and per service) and reflection, on real servers,
and reports NOT_SERVING once it is stopped."""

from __future__ import annotations

import importlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mcloud_common.testing.services import running_service

SERVICES = ["identity", "loyalty", "journey", "recommend", "messaging"]


@pytest.mark.parametrize("name", SERVICES)
async def test_service_serves_health_and_reflection(name, make_database, redis_url):
    app = importlib.import_module(f"{name}.app")
    settings_cls = getattr(importlib.import_module(f"{name}.settings"), f"{name.capitalize()}Settings")
    db = await make_database(name, migrations=app.MIGRATIONS)
    settings = settings_cls(database_url=db, redis_url=redis_url, grpc_port=0)
    full_name = f"mcloud.{name}.v1.{name.capitalize()}Service"
    async with running_service(app.build, settings) as (service, channel):
        health = health_pb2_grpc.HealthStub(channel)
        for svc in ("", full_name):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=2)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        listed = {s.name async for r in replies for s in r.list_services_response.service}
        assert {full_name, "grpc.health.v1.Health"} <= listed
        await service.stop()
        assert service.health._server_status[""] == health_pb2.HealthCheckResponse.NOT_SERVING
