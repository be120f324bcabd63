"""EraseProfile, ExportProfile, tracking plans, bulk imports."""

from __future__ import annotations

import asyncpg

from identity.domain.calls import Call
from identity.grpc_api.base import ServicerBase


class PrivacyApi(ServicerBase):
    async def apply_tracking_plan(self, conn: asyncpg.Connection, tenant: str, calls: list[Call]
                                  ) -> dict[int, tuple[str, str]]:
        """Check `calls` against the tenant's tracking plan (if any) and count violations. Returns
        {index in calls: (code, detail)} for the events the plan blocks; flagged events stay in."""
        return {}
