"""IdentityService servicer: one mixin per area of the API, all mapping proto <-> domain/repo."""

from __future__ import annotations

from identity.grpc_api.ingest_api import IngestApi
from identity.grpc_api.merges_api import MergesApi
from identity.grpc_api.privacy_api import PrivacyApi
from identity.grpc_api.profiles_api import ProfilesApi
from identity.grpc_api.reports_api import ReportsApi
from identity.grpc_api.segments_api import SegmentsApi
from identity.grpc_api.settings_api import SettingsApi
from mcloud.identity.v1 import identity_pb2_grpc


class IdentityServicer(IngestApi, ProfilesApi, MergesApi, SegmentsApi, PrivacyApi, SettingsApi, ReportsApi,
                       identity_pb2_grpc.IdentityServiceServicer):
    """The whole IdentityService; state lives in grpc_api.base.ServicerBase."""
