"""OpenAPI helpers: request bodies documented from pydantic models that the routes do not parse
with (the tracking API parses by hand for speed)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_EXTRA_SCHEMAS: dict[str, Any] = {}


def json_body(model: type[BaseModel], *, example: dict[str, Any] | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body has the shape of `model`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    _EXTRA_SCHEMAS.update(schema.pop("$defs", {}))
    _EXTRA_SCHEMAS[model.__name__] = schema
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    if example is not None:
        media["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": media}}}


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, s in _EXTRA_SCHEMAS.items():
            components.setdefault(name, s)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
