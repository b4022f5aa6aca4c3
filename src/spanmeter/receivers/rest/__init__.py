"""Compatible REST ingest on the OTLP/HTTP port: apps that report usage with plain HTTP calls
shaped for tokens&, LLMtrack, Fluxrate or Spryngtime change only their base URL.

| module        | endpoints                                                      | record |
|---------------|----------------------------------------------------------------|--------|
| tokensand.py  | POST /api/usage/track, /api/usage/track/dry-run, /track/batch   | event  |
| llmtrack.py   | POST /api/ingest                                               | llm    |
| fluxrate.py   | POST /api/v1/sdk/track                                         | meter  |
| spryngtime.py | POST /api/usage-tracking/track-usage                           | llm    |

Each family is a thin adapter from its typed body to the record builders the OTLP converters use
(`convert/model_call.py`, `convert/events.py`), then the one ingest path: pricing, the request's
workspace (the API key's), idempotency and the store (`receivers/ingest.py`). `endpoint.py` holds
what the routes share (body limits, quota, error shapes); `fields.py` the field rules.
Authentication is the HTTP middleware's (an `ingest`-scoped key as `Authorization: Bearer` or
`x-api-key`/`X-API-Key`, when auth is on; with auth off, as for OTLP, no key is needed).
"""

from __future__ import annotations

from fastapi import FastAPI

from spanmeter.receivers.ingest import Ingest
from spanmeter.receivers.rest import fluxrate, llmtrack, spryngtime, tokensand
from spanmeter.receivers.rest.endpoint import RestIngest
from spanmeter.receivers.rest.openapi import add_request_schemas
from spanmeter.store.port import QueryStore

FAMILIES = (tokensand, llmtrack, fluxrate, spryngtime)


def install(app: FastAPI, ingest: Ingest, store: QueryStore, max_request_bytes: int) -> None:
    """Add the four families' routes to `app`, with their request schemas in /openapi.json."""
    api = RestIngest(ingest, store, max_request_bytes)
    for family in FAMILIES:
        app.include_router(family.create_router(api))
    add_request_schemas(app, [model for family in FAMILIES for model in family.REQUEST_MODELS])
