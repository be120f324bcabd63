"""Channels from make_channel spread calls over every address a target resolves to (round_robin), as they
do over a headless Kubernetes Service's pods."""

from __future__ import annotations

import grpc

from mcloud_common.embedded import free_port
from mcloud_common.grpc_client import make_channel


async def test_calls_are_spread_over_every_address_of_the_target() -> None:
    port = free_port()
    calls = {"127.0.0.1": 0, "127.0.0.2": 0}
    servers = []
    for host in calls:
        async def echo(request: bytes, context, host=host) -> bytes:
            calls[host] += 1
            return request

        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})])
        server.add_insecure_port(f"{host}:{port}")
        await server.start()
        servers.append(server)
    channel = make_channel(f"ipv4:127.0.0.1:{port},127.0.0.2:{port}")
    try:
        echo_call = channel.unary_unary("/test.Echo/Echo")
        for n in range(20):
            assert await echo_call(str(n).encode()) == str(n).encode()
        assert calls["127.0.0.1"] >= 5 and calls["127.0.0.2"] >= 5, calls
    finally:
        await channel.close()
        for server in servers:
            await server.stop(None)
