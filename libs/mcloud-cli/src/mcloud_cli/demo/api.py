"""The demo's view of the gateway: the public HTTP API with the tenant's secret key (admin calls) and its
write key (ingest, as a storefront or an app sends it), and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


class DemoError(Exception):
    """A step did not do what it should; `step` names it."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


class Gateway:
    """`async with Gateway(url, write_key, secret_key) as gw:` gw.api (secret key), gw.sdk (write key)."""

    def __init__(self, url: str, write_key: str, secret_key: str, *, timeout: float = 20) -> None:
        self.url = url.rstrip("/")
        self.api = httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {secret_key}"},
                                     timeout=timeout)
        self.sdk = httpx.AsyncClient(base_url=self.url, auth=(write_key, ""), timeout=timeout)
        self.web = httpx.AsyncClient(timeout=timeout)  # a mail client or browser: no key
        self.step = "setup"

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in (self.api, self.sdk, self.web):
            await client.aclose()

    def fail(self, message: str) -> DemoError:
        return DemoError(self.step, message)

    def ok(self, r: httpx.Response, *codes: int) -> Any:
        if r.status_code not in (codes or (200, 201, 202)):
            raise self.fail(f"{r.request.method} {r.request.url.path} answered {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    async def get(self, path: str, **params: Any) -> Any:
        return self.ok(await self.api.get(path, params=params or None))

    async def post(self, path: str, body: Any = None, *codes: int, **kw: Any) -> Any:
        return self.ok(await self.api.post(path, json=body, **kw), *codes)

    async def put(self, path: str, body: Any) -> Any:
        return self.ok(await self.api.put(path, json=body))

    async def maybe(self, path: str, **params: Any) -> Any | None:
        """GET; None on 404."""
        r = await self.api.get(path, params=params or None)
        return None if r.status_code == 404 else self.ok(r)

    async def send(self, *events: dict) -> None:
        """Events through /v1/batch with the write key; every one must be accepted."""
        body = self.ok(await self.sdk.post("/v1/batch", json={"batch": list(events)}))
        if body.get("accepted", len(events)) != len(events):
            raise self.fail(f"the gateway refused events: {body}")

    async def until(self, probe: Callable[[], Awaitable[T | None] | T | None], timeout: float,  # noqa: ASYNC109
                    what: str, interval: float = 0.25) -> T:
        """Poll `probe` (sync or async) until it returns something other than None (or False); DemoError
        naming the step at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
            if value is not None and value is not False:
                return value
            if time.monotonic() >= deadline:
                raise self.fail(f"{what}: not seen within {timeout:.0f} s")
            await asyncio.sleep(interval)
