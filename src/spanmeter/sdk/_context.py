"""The usage context: who the work done inside is for, kept in OpenTelemetry baggage.

Baggage lives in the OpenTelemetry context (a contextvar), so it follows the code: nested contexts
override the outer values they set and keep the others, asyncio tasks created inside copy it, and
the W3C `baggage` header carries it to the services you call when their propagators read it (the
default `OTEL_PROPAGATORS=tracecontext,baggage`; set `tracecontext` alone to keep it in-process).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextvars import Token
from types import TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar, cast

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from spanmeter import usage_schema as U

P = ParamSpec("P")
R = TypeVar("R")

# usage_context() argument → the baggage entry and span attribute it becomes.
CONTEXT_ATTRIBUTES: Final = {
    "customer_id": U.CUSTOMER_ID,
    "user_id": U.USER_ID,
    "conversation_id": U.CONVERSATION_ID,
    "feature": U.FEATURE,
}
MetaValue = str | int | float | bool


class UsageContext:
    """The values of one `usage_context(...)`; enter it (`with`, `async with`) or decorate with it."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = entries  # baggage key (the usage.* attribute name) → value
        self._tokens: list[Token[Context]] = []

    def attach(self) -> Token[Context]:
        """Make these values current; returns the token that undoes it (`otel_context.detach`)."""
        ctx = otel_context.get_current()
        for key, value in self.entries.items():
            ctx = baggage.set_baggage(key, value, ctx)
        return otel_context.attach(ctx)

    def __enter__(self) -> Self:
        self._tokens.append(self.attach())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        otel_context.detach(self._tokens.pop())

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """As a decorator: every call of `fn` (a coroutine function's whole run) is inside."""
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                token = self.attach()
                try:
                    return await async_fn(*args, **kwargs)
                finally:
                    otel_context.detach(token)

            return cast(Callable[P, R], run_async)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            token = self.attach()
            try:
                return fn(*args, **kwargs)
            finally:
                otel_context.detach(token)

        return run


def usage_context(
    *,
    customer_id: str | None = None,
    user_id: str | None = None,
    conversation_id: str | None = None,
    feature: str | None = None,
    **meta: MetaValue,
) -> UsageContext:
    """Who the work inside is for: spans started inside carry `usage.customer.id`, `usage.user.id`,
    `usage.conversation.id`, `usage.feature` and `usage.meta.<key>` for each keyword in `meta`.

    Arguments left None keep the value of an enclosing context. Values are checked as the
    collector checks them (non-empty, at most 4096 characters): ValueError / TypeError naming the
    argument, so a bad value fails here instead of getting the LLM spans inside rejected.
    """
    given = {"customer_id": customer_id, "user_id": user_id, "conversation_id": conversation_id,
             "feature": feature}
    entries = {CONTEXT_ATTRIBUTES[arg]: U.text_value(arg, value) for arg, value in given.items() if value is not None}
    entries.update(meta_attributes(meta))
    return UsageContext(entries)


def meta_attributes(meta: dict[str, MetaValue]) -> dict[str, str]:
    """`usage.meta.<key>` attributes of keyword arguments; numbers and booleans as the text the
    collector would store for them."""
    return {
        U.META_PREFIX + key: U.text_value(key, str(value) if isinstance(value, (int, float)) else value)
        for key, value in meta.items()
    }


def carry_context(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, run in the OpenTelemetry context current now (usage context and parent span included),
    wherever it is called: `threading.Thread(target=carry_context(work))`,
    `executor.submit(carry_context(work))`. Threads do not inherit contextvars by themselves
    (`asyncio.to_thread` and asyncio tasks do)."""
    captured = otel_context.get_current()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        token = otel_context.attach(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run
