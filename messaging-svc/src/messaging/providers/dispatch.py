"""The Dispatcher (one per process): sends an Outgoing through a channel's provider chain - primary, then the
fallbacks in order - skipping providers whose circuit is open, holding each provider to its rate limit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from messaging.providers.base import (
    ChannelSetup,
    Delivery,
    Outgoing,
    PermanentFailure,
    Provider,
    ProviderSpec,
    TemporaryFailure,
)
from messaging.providers.email import LogProvider, SmtpProvider
from messaging.providers.http import http_provider, new_http_client
from messaging.providers.ratelimit import RateLimiter

log = logging.getLogger(__name__)

FAILURE_THRESHOLD = 5
OPEN_SECONDS = 30.0
SWEEP_SECONDS = 30.0  # how often idle SMTP connections and unused provider instances are looked for
UNUSED_SECONDS = 900.0  # a provider instance unused this long is closed and forgotten


class Circuit:
    """A circuit breaker: closed until `threshold` consecutive temporary failures, then open for
    `open_seconds`, then half-open (one trial send at a time); the trial's success closes it, its failure opens
    it again. All times are seconds on one monotonic scale given by the caller."""

    def __init__(self, threshold: int = FAILURE_THRESHOLD, open_seconds: float = OPEN_SECONDS) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.failures = 0
        self.opened_at: float | None = None
        self.trial = False  # a half-open trial send is in flight

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if now - self.opened_at >= self.open_seconds else "open"

    def allow(self, now: float) -> bool:
        """May a send go to this provider now? In half-open, True once until that trial ends."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "open" or self.trial:
            return False
        self.trial = True
        return True

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial = False

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.trial or self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = now
        self.trial = False

    def release(self) -> None:
        """A send ended without telling anything about the provider (cancelled, rate limited)."""
        self.trial = False


class Breakers:
    """The in-process circuits, by (tenant, channel, provider key)."""

    def __init__(self, now: Callable[[], float], threshold: int = FAILURE_THRESHOLD,
                 open_seconds: float = OPEN_SECONDS) -> None:
        self.now = now
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._circuits: dict[tuple[str, str, str], Circuit] = {}

    def get(self, tenant_id: str, channel: str, provider: str) -> Circuit:
        key = (tenant_id, channel, provider)
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = Circuit(self.threshold, self.open_seconds)
        return circuit

    def state(self, tenant_id: str, channel: str, provider: str) -> str:
        circuit = self._circuits.get((tenant_id, channel, provider))
        return "closed" if circuit is None else circuit.state(self.now())


def _monotonic_of(clock: Any) -> Callable[[], float]:
    if clock is None:
        return time.monotonic
    return lambda: clock.now().timestamp()


def circuit_key(spec: ProviderSpec) -> str:
    """Name of a provider's circuit and rate bucket: its name plus a fingerprint of its settings."""
    return f"{spec.provider}:{spec.fingerprint()}"


class Dispatcher:
    """Sends messages through the providers of a ChannelSetup (see `send`)."""

    def __init__(self, redis, *, clock=None, max_wait: float = 2.0, http_timeout: float = 10.0,
                 failure_threshold: int = FAILURE_THRESHOLD, open_seconds: float = OPEN_SECONDS,
                 smtp_pool_size: int = 4) -> None:
        self.breakers = Breakers(_monotonic_of(clock), failure_threshold, open_seconds)
        self.limiter = RateLimiter(redis, max_wait=max_wait)
        self._http_timeout = http_timeout
        self._http = None
        self._smtp_pool_size = smtp_pool_size
        # (tenant, channel, chain position) -> (version, spec, provider)
        self._providers: dict[tuple[str, str, int], tuple[str, ProviderSpec, Provider]] = {}
        self._used: dict[tuple[str, str, int], float] = {}
        self._swept = time.monotonic()
        self._closing: set[asyncio.Task] = set()

    @property
    def http(self):
        if self._http is None:
            self._http = new_http_client(self._http_timeout)
        return self._http

    def _build(self, channel: str, spec: ProviderSpec) -> Provider:
        if spec.provider == "log":
            return LogProvider(spec)
        if channel == "email" and spec.provider == "smtp":
            return SmtpProvider(spec, pool_size=self._smtp_pool_size, timeout=self._http_timeout)
        return http_provider(channel, spec, self.http)

    def provider(self, tenant_id: str, setup: ChannelSetup, position: int) -> Provider:
        """The provider instance at `position` of the chain, rebuilt when the setup changed."""
        spec = setup.chain[position]
        key = (tenant_id, setup.channel, position)
        now = time.monotonic()
        self._used[key] = now
        if now - self._swept >= SWEEP_SECONDS:
            self._sweep(now)
        cached = self._providers.get(key)
        if cached is not None:
            version, old_spec, instance = cached
            if version == setup.version and old_spec == spec:
                return instance
            self._close_later(instance)
        instance = self._build(setup.channel, spec)
        self._providers[key] = (setup.version, spec, instance)
        return instance

    def _sweep(self, now: float) -> None:
        self._swept = now
        for key, used in list(self._used.items()):
            if now - used >= UNUSED_SECONDS:
                del self._used[key]
                cached = self._providers.pop(key, None)
                if cached is not None:
                    self._close_later(cached[2])
        for _, _, instance in self._providers.values():
            prune = getattr(instance, "prune", None)
            if prune is not None:
                prune()

    def _close_later(self, instance: Provider) -> None:
        task = asyncio.get_running_loop().create_task(instance.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def send(self, tenant_id: str, config: ChannelSetup, out: Outgoing) -> Delivery:
        """Send through the primary, then the fallbacks in order, skipping open circuits. A TemporaryFailure
        moves on to the next provider; a PermanentFailure about the recipient (hard_bounce) stops at once.
        Returns the Delivery of the provider that took the message. Raises TemporaryFailure when nothing took
        it and some provider failed temporarily or was skipped (retry later); PermanentFailure when every
        provider refused the message. A provider whose rate limit cannot be met within max_wait raises
        TemporaryFailure(retry_after=...) at once: throttling does not spill over to fallbacks."""
        temporary: list[TemporaryFailure] = []
        permanent: PermanentFailure | None = None
        for position, spec in enumerate(config.chain):
            name = circuit_key(spec)
            circuit = self.breakers.get(tenant_id, config.channel, name)
            if not circuit.allow(self.breakers.now()):
                temporary.append(TemporaryFailure(f"{spec.provider}: circuit open", provider=spec.provider,
                                                  retry_after=self._reopen_in(circuit)))
                continue
            try:
                instance = self.provider(tenant_id, config, position)
                await self.limiter.acquire(tenant_id, config.channel, name, spec.rate_limit_per_second)
            except BaseException:
                circuit.release()
                raise
            try:
                delivery = await instance.send(out)
            except TemporaryFailure as exc:
                circuit.failure(self.breakers.now())
                exc.provider = exc.provider or spec.provider
                log.info("provider %s failed temporarily for %s: %s", spec.provider, out.message_id, exc.detail)
                temporary.append(exc)
                continue
            except PermanentFailure as exc:
                circuit.success()  # the provider answered: it is up
                exc.provider = exc.provider or spec.provider
                if exc.hard_bounce:
                    raise
                permanent = permanent or exc
                continue
            except BaseException:
                circuit.release()
                raise
            circuit.success()
            return delivery
        if temporary:
            waits = [f.retry_after for f in temporary if f.retry_after is not None]
            detail = "; ".join(f"{f.provider}: {f.detail}" if f.provider and not f.detail.startswith(f.provider)
                               else f.detail for f in temporary)
            if permanent is not None:
                detail += f"; {permanent.provider}: {permanent.detail}"
            raise TemporaryFailure(detail, retry_after=min(waits) if waits else None,
                                   provider=temporary[-1].provider)
        assert permanent is not None
        raise permanent

    def _reopen_in(self, circuit: Circuit) -> float | None:
        if circuit.opened_at is None:
            return None
        return max(0.0, circuit.opened_at + circuit.open_seconds - self.breakers.now())

    async def close(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        self._used.clear()
        for _, _, instance in providers:
            try:
                await instance.close()
            except Exception:  # pragma: no cover
                log.debug("closing a provider failed", exc_info=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
