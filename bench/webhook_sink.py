#!/usr/bin/env python
"""A webhook receiver for the ingest benchmark's `--webhook` runs: it accepts spanmeter's webhook
batches (POST /hooks/<run>), parses each body, and counts the records and the distinct record ids
per run; `GET /count/<run>` answers `{"records": N, "unique": M}`.

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as spanmeter's client uses it

    def do_POST(self) -> None:
        run = self.path.rpartition("/")[2]
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        records = json.loads(body)["data"]["records"]
        with _lock:
            _records[run] = _records.get(run, 0) + len(records)
            _ids.setdefault(run, set()).update(r["id"] for r in records)
        self._answer(b"")

    def do_GET(self) -> None:
        run = self.path.rpartition("/")[2]
        with _lock:
            answer = {"records": _records.get(run, 0), "unique": len(_ids.get(run, ()))}
        self._answer(json.dumps(answer).encode())

    def _answer(self, data: bytes) -> None:
        self.send_response(200)
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
