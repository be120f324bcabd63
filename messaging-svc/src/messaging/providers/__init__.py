"""Delivery providers (SMTP, HTTP APIs, webhooks) behind one Dispatcher with failover, circuit breakers and
rate limits."""

from messaging.providers.base import (
    PROVIDERS,
    ChannelSetup,
    Delivery,
    Outgoing,
    PermanentFailure,
    Provider,
    ProviderSpec,
    TemporaryFailure,
    check_provider,
    setup_of,
    spec_of,
)
from messaging.providers.dispatch import Breakers, Circuit, Dispatcher
from messaging.providers.email import LogProvider, SmtpProvider, build_message
from messaging.providers.http import SIGNATURE_HEADER, sign
from messaging.providers.ratelimit import RateLimiter

__all__ = [
    "PROVIDERS",
    "SIGNATURE_HEADER",
    "Breakers",
    "ChannelSetup",
    "Circuit",
    "Delivery",
    "Dispatcher",
    "LogProvider",
    "Outgoing",
    "PermanentFailure",
    "Provider",
    "ProviderSpec",
    "RateLimiter",
    "SmtpProvider",
    "TemporaryFailure",
    "build_message",
    "check_provider",
    "setup_of",
    "sign",
    "spec_of",
]
