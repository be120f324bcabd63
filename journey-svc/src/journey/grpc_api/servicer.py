"""The JourneyService: one mixin per area of the API."""

from __future__ import annotations

from journey.grpc_api.definitions_api import DefinitionsApi
from journey.grpc_api.enrollments_api import EnrollmentsApi
from journey.grpc_api.simulation_api import SimulationApi
from mcloud.journey.v1 import journey_pb2_grpc


class JourneyServicer(DefinitionsApi, EnrollmentsApi, SimulationApi, journey_pb2_grpc.JourneyServiceServicer):
    pass
