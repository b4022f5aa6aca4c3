"""The prompt text of an LLM span, for `query` when content capture is on (off by default).

Read from where the instrumentations put it (tests/fakes/INSTRUMENTATIONS.md): the GenAI
conventions' `gen_ai.input.messages` (JSON, `[{"role", "parts": [{"type": "text", "content"}]}]`),
OpenInference's `llm.input_messages.<i>.message.role|content` (or `.contents.<j>.message_content.text`),
OpenLLMetry's older `gen_ai.prompt.<i>.role|content`, and the deprecated `gen_ai.prompt`.
The prompt is the last user message; the text is truncated to the configured length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

Attrs = Mapping[str, Any]

_INDEXED: Final = (
    re.compile(r"^llm\.input_messages\.(\d+)\.message\.(role|content|contents\.\d+\.message_content\.text)$"),
    re.compile(r"^gen_ai\.prompt\.(\d+)\.(role|content)$"),
)


def prompt_text(attrs: Attrs, max_chars: int) -> str | None:
    text = _from_input_messages(attrs.get("gen_ai.input.messages")) or _from_indexed(attrs)
    if text is None:
        legacy = attrs.get("gen_ai.prompt")
        text = legacy if isinstance(legacy, str) and legacy else None
    return text[:max_chars] if text else None


def _from_input_messages(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    try:
        messages = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            parts = message.get("parts") or []
            texts = [p.get("content") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
            joined = "\n".join(t for t in texts if isinstance(t, str))
            if joined:
                return joined
    return None


def _from_indexed(attrs: Attrs) -> str | None:
    messages: dict[int, dict[str, str]] = {}
    for name, value in attrs.items():
        if not isinstance(value, str) or not name.startswith(("llm.input_messages.", "gen_ai.prompt.")):
            continue
        for pattern in _INDEXED:
            if match := pattern.match(name):
                field = "role" if match.group(2) == "role" else "content"
                entry = messages.setdefault(int(match.group(1)), {})
                entry[field] = entry.get(field, "") + ("\n" if field == "content" and field in entry else "") + value
                break
    for index in sorted(messages, reverse=True):
        if messages[index].get("role") == "user" and messages[index].get("content"):
            return messages[index]["content"]
    return None
