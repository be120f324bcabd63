"""One whole stack, started exactly as `mcloud up` starts it, shared by the e2e tests of a module."""

from __future__ import annotations

import uuid

import pytest

from mcloud_cli.stack import start_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with start_stack(tmp_path_factory.mktemp("e2e") / "mcloud") as handle:
        yield handle


@pytest.fixture(scope="module")
def new_tenant(stack):
    """`mcloud tenant create NAME --json`, as an operator would run it."""

    def create(prefix: str = "acme") -> dict:
        return stack.create_tenant(f"{prefix}-{uuid.uuid4().hex[:6]}")

    return create
