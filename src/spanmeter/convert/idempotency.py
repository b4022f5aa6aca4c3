"""Idempotency keys: one billable fact, one key, however often and by whom it is sent.

Order: the emitter's own `usage.idempotency_key`; for an LLM call with a
provider response id, `llm:<provider>:<response id>` (one provider call is one record even when two
instrumentations describe it in two traces); for one without a response id but with the
provider's request id (a failed call), `llm:<provider>:request/<request id>`; else `<trace_id>:<span_id>`, with `:event/<i>` for
the i-th span event.
"""

from __future__ import annotations


def span_key(trace_id: str, span_id: str) -> str:
    return f"{trace_id}:{span_id}"


def llm_key(provider: str | None, response_id: str) -> str:
    return f"llm:{provider or 'unknown'}:{response_id}"


def request_key(provider: str | None, request_id: str) -> str:
    return f"llm:{provider or 'unknown'}:request/{request_id}"


def span_event_key(base: str, index: int) -> str:
    return f"{base}:event/{index}"


def secondary_key(base: str, kind: str) -> str:
    """Key of a span's second record of another kind (e.g. an LLM span that also carries an event)."""
    return f"{base}:{kind}"
