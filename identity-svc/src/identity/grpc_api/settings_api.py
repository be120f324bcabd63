"""GetSettings / UpdateSettings."""

from __future__ import annotations

from identity.grpc_api.base import Context, ServicerBase
from identity.repo.settings import parse_settings, save_settings
from mcloud.identity.v1 import identity_pb2
from mcloud_common.grpc_server import tenant_id


class SettingsApi(ServicerBase):
    async def GetSettings(self, request: identity_pb2.GetSettingsRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            settings = await self.tenant_settings(conn, tenant)
        return identity_pb2.GetSettingsResponse(settings_json=settings.to_json())

    async def UpdateSettings(self, request: identity_pb2.UpdateSettingsRequest, context: Context):
        tenant = tenant_id(context)
        settings = parse_settings(request.settings_json)
        async with self._pool.acquire() as conn:
            await save_settings(conn, tenant, settings)
        self._settings.put(tenant, settings)
        return identity_pb2.UpdateSettingsResponse(settings_json=settings.to_json())
