"""grpc.aio server bootstrap shared by every service: health + reflection, an OpenTelemetry
server interceptor that skips health checks, domain-error -> status mapping, graceful stop."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import context as otel_context
from opentelemetry import trace

from mcloud_common import errors
from mcloud_common.ids import parse_uuid
from mcloud_common.logs import get_logger
from mcloud_common.metrics import observe_rpc
from mcloud_common.telemetry import extract_context

log = get_logger(__name__)

TENANT_METADATA = "x-tenant-id"
ERROR_CODE_METADATA = "mcloud-error-code"
MAX_CONNECTION_AGE_MS = 300_000
_UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_STATUS_OF: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_code_for(exc: errors.DomainError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in _STATUS_OF:
            return _STATUS_OF[cls]
    return grpc.StatusCode.FAILED_PRECONDITION


def _status_details(code: grpc.StatusCode, exc: errors.DomainError, domain: str) -> bytes:
    """google.rpc.Status with an ErrorInfo, as richer clients read from grpc-status-details-bin."""
    info = error_details_pb2.ErrorInfo(
        reason=exc.code, domain=domain, metadata={k: str(v) for k, v in exc.extra.items()}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    st = status_pb2.Status(code=code.value[0], message=exc.detail, details=[detail])
    return st.SerializeToString()


def tenant_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's tenant from the `x-tenant-id` metadata (never from the body)."""
    for key, value in context.invocation_metadata() or ():
        if key == TENANT_METADATA:
            if parse_uuid(value) is None:
                raise errors.InvalidArgument("x-tenant-id must be a UUID", code="invalid_tenant")
            return value
    raise errors.Unauthenticated("x-tenant-id metadata is required", code="tenant_required")


def _aborted_code(context: grpc.aio.ServicerContext) -> str:
    """The status a handler aborted with (context.abort raised AbortError)."""
    try:
        code = context.code()
    except Exception:  # older grpc: no way to read it back
        return "ABORTED"
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _wrap(behaviour: Callable, method: str, domain: str, traced: bool) -> Callable:
    tracer = trace.get_tracer("mcloud.grpc.server")

    async def handle(request, context: grpc.aio.ServicerContext):
        token = None
        span = None
        if traced:
            md = dict(context.invocation_metadata() or ())
            parent = extract_context(md.get("traceparent", ""), md.get("tracestate", ""))
            token = otel_context.attach(parent)
            span = tracer.start_span(method, kind=trace.SpanKind.SERVER, attributes={
                "rpc.system": "grpc", "rpc.method": method,
            })
            span_token = otel_context.attach(trace.set_span_in_context(span))
        started, outcome = time.perf_counter(), "OK"
        try:
            return await behaviour(request, context)
        except errors.DomainError as exc:
            code = status_code_for(exc)
            outcome = code.name
            if span is not None:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
            await context.abort(code, exc.detail, trailing_metadata=(
                (ERROR_CODE_METADATA, exc.code),
                ("grpc-status-details-bin", _status_details(code, exc, domain)),
            ))
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            outcome = _aborted_code(context)
            raise
        except NotImplementedError:
            outcome = "UNIMPLEMENTED"
            # a generated base servicer's method: the RPC is in the contract but not built yet
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet",
                                trailing_metadata=((ERROR_CODE_METADATA, "unimplemented"),))
        except Exception as exc:
            outcome = "INTERNAL"
            if errors.dependency_down(exc):
                outcome = "UNAVAILABLE"
                log.warning("dependency unavailable", rpc=method, error=repr(exc))
                await context.abort(grpc.StatusCode.UNAVAILABLE, "a dependency is unavailable, retry later",
                                    trailing_metadata=((ERROR_CODE_METADATA, "dependency_unavailable"),))
            # never leak internals to the client
            if span is not None:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            log.exception("unhandled error in rpc", rpc=method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error",
                                trailing_metadata=((ERROR_CODE_METADATA, "internal"),))
        finally:
            observe_rpc(method, outcome, time.perf_counter() - started)
            if span is not None:
                otel_context.detach(span_token)
                span.end()
                otel_context.detach(token)

    return handle


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Tracing (skipping health and reflection) and domain-error mapping for unary RPCs."""

    def __init__(self, domain: str) -> None:
        self._domain = domain
        self._wrapped: dict[str, tuple[object, grpc.RpcMethodHandler]] = {}  # method -> (handler, its wrapper)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        hit = self._wrapped.get(method)
        if hit is not None and hit[0] is handler:  # wrapped once per method, not per call
            return hit[1]
        traced = not method.startswith(_UNTRACED_PREFIXES)
        wrapped = grpc.unary_unary_rpc_method_handler(
            _wrap(handler.unary_unary, method, self._domain, traced),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = (handler, wrapped)
        return wrapped


Registrar = Callable[[grpc.aio.Server], Iterable[str]]


@dataclass
class GrpcService:
    """A running gRPC server: `await start()`, then `await wait()` until SIGTERM/SIGINT or `stop()`."""

    name: str
    address: str
    registrar: Registrar
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    grace: float = 5.0

    def __post_init__(self) -> None:
        self.server = grpc.aio.server(
            interceptors=[ServiceInterceptor(f"mcloud.{self.name}")],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                     # clients reconnect every few minutes (calls in flight finish first), so they resolve
                     # the service again and find replicas added since: scaling out reaches old clients
                     ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
                     ("grpc.max_connection_age_grace_ms", 30_000)],
        )
        self.health = health.aio.HealthServicer()
        self._stopped = asyncio.Event()
        self.port = 0

    async def start(self) -> int:
        names = list(self.registrar(self.server))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC port {self.address}")
        await self.server.start()
        for n in ["", *names]:
            await self.health.set(n, health_pb2.HealthCheckResponse.SERVING)
        self._names = names
        log.info("grpc serving", service=self.name, port=self.port)
        return self.port

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopped.set)

    async def wait(self) -> None:
        await self._stopped.wait()
        await self.stop()

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish within `grace`, then run the stop hooks."""
        if getattr(self, "_stopping", False):
            return
        self._stopping = True
        self._stopped.set()
        started = time.monotonic()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace)
        for hook in reversed(self.on_stop):
            try:
                await hook()
            except Exception:
                log.exception("stop hook failed")
        log.info("grpc stopped", service=self.name, seconds=round(time.monotonic() - started, 3))
