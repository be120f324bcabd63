from __future__ import annotations

import pytest

from identity.app import MIGRATIONS, build
from identity.settings import IdentitySettings
from mcloud.identity.v1 import identity_pb2_grpc
from mcloud_common.testing.services import running_service


@pytest.fixture
async def identity_db(make_database) -> str:
    return await make_database("identity", migrations=MIGRATIONS)


@pytest.fixture
def settings_for(redis_url):
    def make(db_url: str, **overrides) -> IdentitySettings:
        return IdentitySettings(database_url=db_url, redis_url=redis_url, grpc_port=0, **overrides)

    return make


@pytest.fixture
async def identity(identity_db, settings_for):
    """A real identity service (relay running) and a stub to call it."""
    async with running_service(build, settings_for(identity_db)) as (service, channel):
        yield identity_pb2_grpc.IdentityServiceStub(channel), service
