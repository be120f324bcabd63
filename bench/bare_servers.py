"""The bare servers bench.ceilings measures, each run in its own process (imports kept light so they
start fast):

    python -m bench.bare_servers grpc PORT [POSTGRES_DSN]   # grpc.aio: Echo, and Lookup (one row by key)
    python -m bench.bare_servers http PORT [GRPC_TARGET]    # FastAPI on uvicorn: /ping, /chain/{n}
"""

from __future__ import annotations

import asyncio
import sys

ECHO = "/bench.Echo/Echo"
LOOKUP = "/bench.Echo/Lookup"
CHAIN_ROWS = 10_000


def serve_grpc(port: int, dsn: str | None) -> None:
    """A grpc.aio server as our services make theirs (server options, uvloop), minus every
    interceptor: Echo returns its request; Lookup reads one row of bench_chain by primary key."""
    import grpc
    import uvloop

    async def main() -> None:
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10) if dsn else None

        async def echo(request: bytes, context) -> bytes:
            return request

        async def lookup(request: bytes, context) -> bytes:
            v = await pool.fetchval("SELECT v FROM bench_chain WHERE id = $1", int(request or b"0") % CHAIN_ROWS)
            return (v or "").encode()

        server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                          ("grpc.max_receive_message_length", 16 * 1024 * 1024)])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Lookup": grpc.unary_unary_rpc_method_handler(lookup)})])
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.install()
    asyncio.run(main())


def serve_http(port: int, grpc_target: str | None) -> None:
    """FastAPI on uvicorn with the gateway's server settings (gateway/__main__.py): GET /ping, and
    GET /chain/{n} (one gRPC Lookup call)."""
    from contextlib import asynccontextmanager

    import grpc
    import uvicorn
    from fastapi import FastAPI

    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        channel = grpc.aio.insecure_channel(grpc_target) if grpc_target else None
        if channel is not None:
            state["lookup"] = channel.unary_unary(LOOKUP)
        yield
        if channel is not None:
            await channel.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict:
        return {"status": "ok"}

    @app.get("/chain/{n}")
    async def chain(n: int) -> dict:
        v = await state["lookup"](str(n).encode(), timeout=10)
        return {"v": v.decode()}

    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_config=None, timeout_graceful_shutdown=10,
                            proxy_headers=False, server_header=False)
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in ("grpc", "http"):
        raise SystemExit(__doc__)
    arg = args[2] if len(args) > 2 else None
    (serve_grpc if args[0] == "grpc" else serve_http)(int(args[1]), arg)


if __name__ == "__main__":
    main()
