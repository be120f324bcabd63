"""Cold start with what identity knows: a profile recommend has never seen gets the popular items of
the favourite category identity computed for it (a small stand-in identity gRPC server answers)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
import pytest

from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud.recommend.v1 import recommend_pb2_grpc
from mcloud_common import errors
from mcloud_common.grpc_server import GrpcService
from mcloud_common.testing.services import TenantApi, running_service
from recommend.app import build
from recommend.settings import RecommendSettings
from recommend.testing import feedback, sports_catalogue


class KnowsFavourites(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self) -> None:
        self.favourites: dict[str, str] = {}

    async def GetProfile(self, request, context):
        if request.profile_id not in self.favourites:
            raise errors.NotFound("no such profile", code="profile_not_found")
        computed = {"favourite_category": self.favourites[request.profile_id]}
        return identity_pb2.GetProfileResponse(profile=identity_pb2.Profile(
            id=request.profile_id, computed_json=orjson.dumps(computed).decode()))


@pytest.fixture
async def identity():
    servicer = KnowsFavourites()

    def register(server):
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
        return ["mcloud.identity.v1.IdentityService"]

    service = GrpcService("identity", "127.0.0.1:0", register, grace=0.1)
    port = await service.start()
    yield servicer, port
    await service.stop()


async def test_a_new_profile_gets_the_popular_items_of_its_favourite_category(recommend_db, redis_url, clock,
                                                                              identity):
    servicer, port = identity
    settings = RecommendSettings(database_url=recommend_db, redis_url=redis_url, grpc_port=0,
                                 identity_target=f"127.0.0.1:{port}")
    async with running_service(build, settings, clock=clock, jobs=False) as (_, channel):
        api = TenantApi(recommend_pb2_grpc.RecommendServiceStub(channel), str(uuid.uuid4()))
        await api.call("UpsertItems", pb.UpsertItemsRequest(items=sports_catalogue()))
        crowd = []
        for _ in range(5):  # shoes are what most people buy; yoga is a niche
            p = str(uuid.uuid4())
            crowd += [feedback(p, "pegasus-40", pb.FEEDBACK_KIND_PURCHASE, clock.now() - timedelta(days=1)),
                      feedback(p, "run-socks", pb.FEEDBACK_KIND_PURCHASE, clock.now() - timedelta(days=1))]
        crowd.append(feedback(str(uuid.uuid4()), "yoga-mat", pb.FEEDBACK_KIND_VIEW, clock.now()))
        await api.call("RecordFeedback", pb.RecordFeedbackRequest(feedback=crowd))
        await api.call("RetrainModel", pb.RetrainModelRequest(wait=True))

        yogi = str(uuid.uuid4())
        servicer.favourites[yogi] = "yoga"
        r = await api.call("Recommend", pb.RecommendRequest(profile_id=yogi, count=3))
        assert r.cold_start
        assert r.items[0].item_id == "yoga-mat" and r.items[0].explanation == "Popular in yoga"
        stranger = await api.call("Recommend", pb.RecommendRequest(profile_id=str(uuid.uuid4()), count=1))
        assert stranger.cold_start and stranger.items[0].item_id == "pegasus-40"  # identity knows nothing
