"""A webhook receiver on 127.0.0.1 that checks every request against the contract spanmeter's
`webhook` exporter documents (src/spanmeter/exporters/webhook.py):

- POST, `content-type: application/json`;
- Standard Webhooks headers `webhook-id`, `webhook-timestamp` and, when the receiver has the
  secret, a `webhook-signature` that `standardwebhooks.Webhook(secret).verify` accepts;
- body `{"type": "usage.records", "timestamp": ..., "data": {"exporter": ..., "records": [...]}}`,
  each record readable by the query API's `UsageItem` model.

A request that breaks the contract is kept in `violations` (tests assert there are none) and
answered 400. Otherwise the receiver answers from `script` (a list of (status, headers, body)
answers, used up in order; 200 when empty; `delay` seconds before each of the first `slow`
answers), and keeps what it accepted in `accepted`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from spanmeter.api.models import UsageItem


@dataclass
class Message:
    id: str
    timestamp: str
    exporter: str
    records: list[dict[str, Any]]
    answer: int


@dataclass
class WebhookReceiver:
    secret: str | None = None
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)  # every well-formed request, whatever the answer
    violations: list[str] = field(default_factory=list)
    slow: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/usage"

    @property
    def accepted(self) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if 200 <= m.answer < 300]

    def accepted_records(self) -> list[dict[str, Any]]:
        return [r for m in self.accepted for r in m.records]

    def answer_next(self, *answers: tuple[int, dict[str, str], str]) -> None:
        with self.lock:
            self.script.extend(answers)

    def check(self, headers: dict[str, str], body: bytes, method: str, path: str) -> tuple[str | None, Message | None]:
        if method != "POST" or path != "/hooks/usage":
            return f"{method} {path}: expected POST /hooks/usage", None
        if headers.get("content-type") != "application/json":
            return f"content-type {headers.get('content-type')!r}", None
        for name in ("webhook-id", "webhook-timestamp"):
            if not headers.get(name):
                return f"missing {name}", None
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError as error:
                return f"signature: {error}", None
        try:
            payload = json.loads(body)
        except ValueError as error:
            return f"body is not JSON: {error}", None
        if set(payload) != {"type", "timestamp", "data"} or payload["type"] != "usage.records":
            return f"payload keys {sorted(payload)} / type {payload.get('type')!r}", None
        data = payload["data"]
        if set(data) != {"exporter", "records"} or not isinstance(data["records"], list) or not data["records"]:
            return f"data {str(data)[:200]}", None
        for record in data["records"]:
            item = UsageItem.model_validate(record)
            if item.model_dump(mode="json", by_alias=True, exclude_none=True) != record:
                return f"record {record.get('id')} does not read back unchanged as a UsageItem", None
        return None, Message(headers["webhook-id"], headers["webhook-timestamp"], data["exporter"], data["records"], 0)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                problem, message = receiver.check(headers, body, self.command, self.path)
                status, extra, text = 400, {}, problem or ""
                with receiver.lock:
                    wait, receiver.slow = (receiver.delay, receiver.slow - 1) if receiver.slow > 0 else (0.0, 0)
                time.sleep(wait)
                with receiver.lock:
                    if problem is not None:
                        receiver.violations.append(problem)
                    else:
                        assert message is not None
                        status, extra, text = receiver.script.pop(0) if receiver.script else (200, {}, "")
                        message.answer = status
                        receiver.messages.append(message)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                data = text.encode()
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
