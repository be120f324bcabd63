"""Sends from journey steps go to messaging in batches: concurrent SendMessage calls of one tenant are
coalesced into one SendMessages call (up to `most` items, waiting at most `linger` seconds for company),
and each caller gets its own item's result. A step batch of a few hundred people costs one round trip
instead of hundreds."""

from __future__ import annotations

import asyncio

import grpc

from mcloud.messaging.v1 import messaging_pb2, messaging_pb2_grpc
from mcloud_common.grpc_client import tenant_metadata


class SendRefused(Exception):
    """messaging refused this item (its error code and detail), e.g. an unknown template."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


class SendBatcher:
    def __init__(self, stub: messaging_pb2_grpc.MessagingServiceStub, *, most: int = 500, linger: float = 0.003
                 ) -> None:
        self._stub = stub
        self._most = most
        self._linger = linger
        self._pending: dict[str, list[tuple[messaging_pb2.SendMessageRequest, asyncio.Future]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    async def send(self, tenant: str, request: messaging_pb2.SendMessageRequest) -> messaging_pb2.Message:
        """Queue `request` with messaging; the message, or SendRefused / grpc.aio.AioRpcError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        batch = self._pending.setdefault(tenant, [])
        batch.append((request, future))
        if len(batch) >= self._most:
            self._start(tenant)
        elif tenant not in self._timers:
            self._timers[tenant] = loop.call_later(self._linger, self._start, tenant)
        return await future

    def _start(self, tenant: str) -> None:
        timer = self._timers.pop(tenant, None)
        if timer is not None:
            timer.cancel()
        batch = self._pending.pop(tenant, [])
        if batch:
            task = asyncio.get_running_loop().create_task(self._flush(tenant, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, tenant: str, batch: list) -> None:
        try:
            response = await self._stub.SendMessages(
                messaging_pb2.SendMessagesRequest(messages=[r for r, _ in batch]), metadata=tenant_metadata(tenant))
        except grpc.aio.AioRpcError as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, response.results, strict=True):
            if future.done():
                continue
            if result.error_code:
                future.set_exception(SendRefused(result.error_code, result.error_detail))
            else:
                future.set_result(result.message)
