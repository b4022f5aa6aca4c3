"""A fake REST target on 127.0.0.1 for exporter tests: a real HTTP server in its own thread.

It records every request (method, path, headers, JSON body), checks each with the test's
`check` function (the target's contract: path, auth header, field names and types; it returns
what is wrong, or None), and answers from a script: `answer_next(...)` queues answers used up in
order, `respond(fn)` answers by a function of the request, otherwise `default` (200). A request
that breaks the contract is kept in `violations` (tests assert there are none) and answered 400.

    target = RestTarget(check=check_llmtrack, default=(201, {}, {"ok": True})).start()
    target.answer_next((503, {"retry-after": "0"}, "busy"))
    ... target.accepted ... target.counts(lambda r: [r.body["idempotency_key"]])

For the outage and crash tests it can be down (the port refuses connections) and up again on the
same port, and it can hold the request after the first `n` accepted ones (`hold_after(n)`): that
request waits, unanswered, until `release()`, which drops it (closes the connection, counts
nothing): a test kills spanmeter while it waits for that answer.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], Any]  # status, headers, body (a str as is, anything else as JSON)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    raw: bytes
    body: Any  # the JSON body, or None when it is not JSON
    answer: int = 0  # the status it was answered with (0: dropped unanswered)


Check = Callable[[Request], str | None]


@dataclass
class RestTarget:
    check: Check | None = None
    default: Answer = (200, {}, "")
    requests: list[Request] = field(default_factory=list)  # every request that kept the contract
    violations: list[str] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    responder: Callable[[Request], Answer | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _hold_after: int | None = None
    holding: threading.Event = field(default_factory=threading.Event)  # set while a request is held
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        """The base URL (no path): http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.answer < 300]

    def answer_next(self, *answers: Answer) -> None:
        with self.lock:
            self.script.extend(answers)

    def respond(self, responder: Callable[[Request], Answer | None]) -> None:
        """Answer each request by `responder` (None from it: the script or the default)."""
        with self.lock:
            self.responder = responder

    def counts(self, ids: Callable[[Request], Iterable[str]]) -> Counter[str]:
        """How many times each id (idempotency key, record id, ...) arrived in accepted requests."""
        return Counter(i for r in self.accepted for i in ids(r))

    def hold_after(self, accepted: int) -> None:
        """Hold the first request that arrives once `accepted` requests were accepted."""
        with self.lock:
            self._hold_after = accepted
            self._release.clear()
            self.holding.clear()

    def release(self) -> None:
        """Drop the held request unanswered; the ones after it are answered again."""
        with self.lock:
            self._hold_after = None
        self._release.set()

    def start(self) -> RestTarget:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # polled often: down() and stop() wait up to one poll interval (0.5 s by default)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="rest-target", daemon=True).start()
        return self

    def down(self) -> None:
        """Stop listening: connections to the port are refused until `up()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def up(self) -> None:
        self.start()  # the same port (SO_REUSEADDR)

    def stop(self) -> None:
        self.release()
        self.down()

    def _answer(self, request: Request) -> Answer | None:
        """The answer to a well-formed request, or None to drop it (held, then released)."""
        with self.lock:
            held = self._hold_after is not None and len([r for r in self.requests if 200 <= r.answer < 300]) >= (
                self._hold_after
            )
            if held:
                self.holding.set()
        if held:
            self._release.wait()
            return None
        with self.lock:
            found = self.responder(request) if self.responder is not None else None
            if found is None:
                found = self.script.pop(0) if self.script else self.default
            request.answer = found[0]
            self.requests.append(request)
            return found

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw, body)
                problem = target.check(request) if target.check is not None else None
                if problem is not None:
                    with target.lock:
                        target.violations.append(f"{self.command} {self.path}: {problem}")
                    answer: Answer | None = (400, {}, {"error": problem})
                else:
                    answer = target._answer(request)
                if answer is None:  # dropped: no answer at all
                    self.close_connection = True
                    return
                status, headers, content = answer
                data = (content if isinstance(content, str) else json.dumps(content)).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if not isinstance(content, str):
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
