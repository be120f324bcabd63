"""The MessagingService: one mixin per area of the API over shared state (ServicerBase)."""

from __future__ import annotations

from mcloud.messaging.v1 import messaging_pb2_grpc
from messaging.grpc_api.people_api import PeopleApi
from messaging.grpc_api.reports_api import ReportsApi
from messaging.grpc_api.sends_api import SendsApi
from messaging.grpc_api.templates_api import TemplatesApi
from messaging.grpc_api.tracking_api import TrackingApi


class MessagingServicer(TemplatesApi, SendsApi, PeopleApi, TrackingApi, ReportsApi,
                        messaging_pb2_grpc.MessagingServiceServicer):
    pass
