"""Background work of the segments area inside the identity process (placeholder until filled in)."""

from __future__ import annotations

from identity.settings import IdentitySettings
from mcloud_common.runtime import Runtime


async def install(runtime: Runtime, settings: IdentitySettings) -> None:
    """Start this area's periodic jobs / consumers on `runtime` (they stop with it)."""
