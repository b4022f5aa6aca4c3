"""The REST ingest routes in /openapi.json: request bodies and every response with its schema.

The routes read their bodies themselves (415, 413, strict JSON, per-event errors in a batch), so
FastAPI does not see the request models: `body_of` points the request body at them and
`add_request_schemas` puts them into the document's components.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from spanmeter.api.errors import ErrorBody

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def body_of(*models: type[BaseModel], array_of: tuple[type[BaseModel], ...] = ()) -> dict[str, Any]:
    """`openapi_extra` of a route whose JSON body is one of `models` (or an array of `array_of`)."""
    choices: list[dict[str, Any]] = [_ref(m) for m in models]
    if array_of:
        items = [_ref(m) for m in array_of]
        choices.append({"type": "array", "maxItems": 500, "items": items[0] if len(items) == 1 else {"oneOf": items}})
    schema = choices[0] if len(choices) == 1 else {"oneOf": choices}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def route_args(
    status: int,
    model: type[BaseModel],
    body: dict[str, Any],
    *,
    invalid: type[BaseModel] = ErrorBody,
    quota: bool = False,
    errors: type[BaseModel] = ErrorBody,
) -> dict[str, Any]:
    """`add_api_route` keyword arguments: success status and model, the error responses, the body."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": model, "description": "accepted"},
        400: {
            "model": invalid,
            "description": "malformed JSON or an invalid field (the message names it), or a value the store cannot hold",
        },
        401: {"model": errors, "description": "Missing API key / Invalid API key / Revoked API key / Inactive API key"},
        403: {"model": errors, "description": "the API key lacks the ingest scope"},
        413: {"model": errors, "description": "body over the size limit"},
        415: {"model": errors, "description": "not application/json"},
        503: {"model": errors, "description": "overloaded; retry after Retry-After seconds"},
    }
    if quota:
        responses[402] = {"model": errors, "description": "the API key's monthly quota is used up"}
    return {"status_code": status, "responses": responses, "openapi_extra": body, "response_model": None}


def add_request_schemas(app: FastAPI, models: Iterable[type[BaseModel]]) -> None:
    """Add the request models (and the models they use) to /openapi.json's components."""
    build: Callable[[], dict[str, Any]] = app.openapi
    models = tuple(models)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            schema = model.model_json_schema(ref_template=_REF)
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas.setdefault(model.__name__, schema)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
