"""The token counts of a model call in the one contract records use (DESIGN.md "One token
contract"): input and output inclusive of their parts, and a total. Both conversion paths
(spans.py, fast_path.py) read the reported counts their own way and settle them here."""

from __future__ import annotations


def settle_counts(
    input_tokens: int | None,
    output_tokens: int | None,
    total_tokens: int | None,
    cache_read: int | None,
    cache_write: int | None,
    reasoning: int | None,
    *,
    operation: str,
    exclusive_input: bool,
) -> tuple[int | None, int | None, int | None]:
    """(input, output, total) as stored.

    Input excludes the cache tokens when the source is known to pass exclusive counts through
    (`exclusive_input`), or when the parts are larger than the whole, which inclusive counts can
    never be; likewise output and reasoning tokens. A reported total made of exclusive counts is
    dropped; a missing total is input + output (input alone for embeddings, which have no output).
    """
    cached = (cache_read or 0) + (cache_write or 0)
    if input_tokens is not None and cached and (exclusive_input or cached > input_tokens):
        input_tokens += cached
        total_tokens = None
    if output_tokens is not None and reasoning and reasoning > output_tokens:
        output_tokens += reasoning
        total_tokens = None
    if total_tokens is None and input_tokens is not None:
        if output_tokens is not None:
            total_tokens = input_tokens + output_tokens
        elif operation == "embeddings":
            total_tokens = input_tokens
    return input_tokens, output_tokens, total_tokens
