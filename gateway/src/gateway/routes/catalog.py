"""Catalogue API: the items recommend-svc may recommend (products, activities such as a city marathon,
content), written in bulk by the shop and read back by id or page by page. Reads need `recommend:read`,
changes `recommend:write` (or `admin`). Writes are idempotent by item id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from gateway.auth import RecommendReader, RecommendWriter
from gateway.recommend import ITEM_KIND, item_pb, item_read
from gateway.resources import RecommendDep
from gateway.schemas.common import problem_responses
from gateway.schemas.loyalty import Cursor, Label
from gateway.schemas.recommend import DeleteResult, ItemDelete, ItemKind, ItemPage, ItemRead, ItemUpsert, UpsertResult
from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])
READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
WRITE_ERRORS = problem_responses(400, 401, 403, 422, 429, 503, 504)
ItemIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f]+$",
        description="the item's id (an id containing '/' can be read through the list and deleted in bulk)",
        examples=["pegasus-40"],
    ),
]


@router.post(
    "/items",
    response_model=UpsertResult,
    responses=WRITE_ERRORS,
    summary="Create or replace catalogue items (1 to 1,000)",
    description="Each item replaces the item with the same id, whole. Prices are decimal major units of the "
    "item's currency (159.00 EUR); a price with more decimals than its currency has is refused (422). "
    "Safe to retry: upserting the same items again changes nothing.",
)
async def upsert_items(body: ItemUpsert, principal: RecommendWriter, recommend: RecommendDep) -> UpsertResult:
    result = await recommend.UpsertItems(
        pb.UpsertItemsRequest(items=[item_pb(i) for i in body.items]), metadata=tenant_metadata(principal.tenant_id)
    )
    return UpsertResult(upserted=result.upserted)


@router.get(
    "/items",
    response_model=ItemPage,
    responses=READ_ERRORS,
    summary="Page through the catalogue, by id, optionally within a category or of one kind",
)
async def list_items(
    principal: RecommendReader,
    recommend: RecommendDep,
    category: Annotated[Label | None, Query(description="items whose categories include this one")] = None,
    kind: Annotated[ItemKind | None, Query(description="only items of this kind")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="items per page")] = 50,
    cursor: Annotated[Cursor | None, Query(description="next_cursor of the previous page")] = None,
) -> ItemPage:
    result = await recommend.ListItems(
        pb.ListItemsRequest(
            category=category or "",
            kind=ITEM_KIND.value(kind) if kind else pb.ITEM_KIND_UNSPECIFIED,
            page_size=limit,
            page_token=cursor or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return ItemPage(items=[item_read(i) for i in result.items], next_cursor=result.next_page_token or None)


@router.get(
    "/items/{item_id}",
    response_model=ItemRead,
    responses=READ_ERRORS,
    summary="Read one catalogue item (404 when absent or deleted)",
)
async def get_item(item_id: ItemIdPath, principal: RecommendReader, recommend: RecommendDep) -> ItemRead:
    result = await recommend.GetItem(pb.GetItemRequest(item_id=item_id), metadata=tenant_metadata(principal.tenant_id))
    return item_read(result.item)


@router.delete(
    "/items/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(400, 401, 403, 429, 503, 504),
    summary="Delete one item: it is never recommended again (204, also when it was already gone)",
)
async def delete_item(item_id: ItemIdPath, principal: RecommendWriter, recommend: RecommendDep) -> Response:
    await recommend.DeleteItems(
        pb.DeleteItemsRequest(item_ids=[item_id]), metadata=tenant_metadata(principal.tenant_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/items/delete",
    response_model=DeleteResult,
    responses=WRITE_ERRORS,
    summary="Delete items in bulk (1 to 1,000 ids)",
    description="Ids that do not exist are skipped; `deleted` counts the items that existed. Safe to retry.",
)
async def delete_items(body: ItemDelete, principal: RecommendWriter, recommend: RecommendDep) -> DeleteResult:
    result = await recommend.DeleteItems(
        pb.DeleteItemsRequest(item_ids=body.item_ids), metadata=tenant_metadata(principal.tenant_id)
    )
    return DeleteResult(deleted=result.deleted)
