#!/usr/bin/env python
"""A webhook receiver for the ingest benchmark's `--webhook` runs: it accepts spanmeter's webhook
batches (POST /hooks/<run>), parses each body, and counts the records and the distinct record ids
per run; `GET /count/<run>` answers `{"records": N, "unique": M, "services": {...}}`.

With `--rest-exporters` it also stands in for the four REST targets, under a per-run prefix:
POST /<run>/api/usage/track/batch (tokens&, events counted), /<run>/api/ingest (LLMtrack),
/<run>/api/v1/sdk/track (Fluxrate), /<run>/spryngtime (Spryngtime); each answered as its
service documents a success, and counted per service in "services".

    python bench/webhook_sink.py --port 9000
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_lock = threading.Lock()
_records: dict[str, int] = {}
_ids: dict[str, set[str]] = {}
_services: dict[str, dict[str, int]] = {}  # run -> REST service -> records received
# path after the run prefix -> (service, status, success answer as the service documents it)
_REST: dict[str, tuple[str, int, dict[str, object]]] = {
    "api/usage/track/batch": ("tokensand", 202, {"ok": True, "accepted": 0, "duplicates": 0, "errors": []}),
    "api/ingest": ("llmtrack", 201, {"ok": True, "consumption_source": "included"}),
    "api/v1/sdk/track": ("fluxrate", 202, {"ok": True, "duplicate": False}),
    "spryngtime": ("spryngtime", 200, {"ok": True}),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as spanmeter's client uses it
    # TCP_NODELAY: the headers and the body are two writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms), which would cap one-record-per-request exporters at ~25 records/s.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.startswith("/hooks/"):
            run = self.path.rpartition("/")[2]
            records = json.loads(body)["data"]["records"]
            with _lock:
                _records[run] = _records.get(run, 0) + len(records)
                _ids.setdefault(run, set()).update(r["id"] for r in records)
            self._answer(b"")
            return
        run, _, rest = self.path.lstrip("/").partition("/")
        service, status, answer = _REST[rest]
        data = json.loads(body)
        count = len(data["events"]) if service == "tokensand" else 1
        if service == "tokensand":
            answer = {**answer, "accepted": count}
        with _lock:
            services = _services.setdefault(run, {})
            services[service] = services.get(service, 0) + count
        self._answer(json.dumps(answer).encode(), status)

    def do_GET(self) -> None:
        run = self.path.rpartition("/")[2]
        with _lock:
            answer = {"records": _records.get(run, 0), "unique": len(_ids.get(run, ())),
                      "services": dict(_services.get(run, {}))}
        self._answer(json.dumps(answer).encode())

    def _answer(self, data: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
