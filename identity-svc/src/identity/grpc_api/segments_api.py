"""SegmentsApi (placeholder: filled in by its owner)."""

from __future__ import annotations

from identity.grpc_api.base import ServicerBase


class SegmentsApi(ServicerBase):
    pass
