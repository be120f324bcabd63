"""Identity-events consumer (being built)."""

from __future__ import annotations

from loyalty.settings import LoyaltySettings
from mcloud_common.runtime import Runtime


async def install(runtime: Runtime, settings: LoyaltySettings) -> None:
    """Start the consumer."""
