"""Bulk import shapes: start (or resume), a chunk of rows, the running report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_ROWS = 5000
Cell = Annotated[str, StringConstraints(max_length=4096)]


class ImportStart(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"import_id": "crm-2026-11", "name": "customers.csv", "source": "crm",
                 "columns": ["user_id", "email", "phone", "name", "city"]}
            ]
        },
    )

    import_id: str | None = Field(
        None, max_length=200, description="your id for this import; POST again with it to resume (default: generated)"
    )
    name: str = Field("", max_length=500, description="file name, for the report")
    source: Literal["crm", "pos"] = Field(description="the channel the rows are recorded under")
    columns: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        min_length=1, max_length=500,
        description="the file's header. Identifier columns (user_id, email, phone, member_id, crm_id, pos_card, "
        "wechat_openid, wechat_unionid, custom types) match people; every other column is a trait",
    )


class ImportRowIn(BaseModel):
    number: int = Field(ge=1, le=2**63 - 1, description="1-based row number in the file (header excluded), ascending")
    cells: list[Cell] = Field(max_length=500, description="cells in the order of the columns")


class ImportRowsChunk(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"rows": [{"number": 1, "cells": ["42", "rachel@example.com", "", "Rachel",
                                                                          "Shanghai"]}]}]},
    )

    rows: list[ImportRowIn] = Field(max_length=MAX_ROWS, description=f"at most {MAX_ROWS} rows")


class ImportReportRead(BaseModel):
    import_id: str
    name: str
    source: str
    columns: list[str]
    last_row: int = Field(description="highest row number stored; a resumed import continues after it")
    accepted: int = Field(description="rows stored (merged ones included)")
    merged: int = Field(description="accepted rows that matched a person who already existed")
    rejected: int
    rejected_by_code: dict[str, int] = Field(description="rejections per reason (invalid_email, no_identifier, ...)")
    started_at: datetime | None
    updated_at: datetime | None


class ImportRowRejected(BaseModel):
    number: int
    code: str
    detail: str


class ImportRowsRead(BaseModel):
    report: ImportReportRead
    rejected: list[ImportRowRejected] = Field(description="the rows of this chunk that were rejected, and why")
