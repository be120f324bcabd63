"""(being built)"""

from __future__ import annotations

from messaging.grpc_api.base import ServicerBase


class TrackingApi(ServicerBase):
    pass
