"""A webhook receiver on loopback that checks the Standard Webhooks signature of every POST.

In-process (:class:`Receiver`, a thread) for the fast suites, or as its own process for the
integration test and the benchmark: ``python tests/factories/webhook_receiver.py --port P
--secret whsec_... --log FILE`` appends one JSON line per POST (``id``, ``event``, ``valid``,
``received``: the Unix time it arrived). It verifies with its own HMAC code, not ours.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def valid_signature(secret: str, headers: Any, body: bytes) -> bool:
    if not secret.startswith("whsec_"):
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    message_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[-1] for part in headers.get("webhook-signature", "").split()]
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
    return fresh and any(hmac.compare_digest(expected, g) for g in given)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        record = {
            "id": self.headers.get("webhook-id"),
            "valid": valid_signature(self.server.secret, self.headers, body),
            "received": time.time(),
            "path": self.path,
            "host": self.headers.get("host"),
            "body": body.decode(errors="replace"),
        }
        try:
            record["event"] = json.loads(body).get("event")
        except ValueError:
            record["event"] = None
        self.server.record(record)
        status = self.server.status
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, secret: str, log_path: str | None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.secret = secret
        self.status = 200
        self.received: list[dict[str, Any]] = []
        self.log_path = log_path
        self.lock = threading.Lock()

    def record(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.received.append(record)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")


class Receiver:
    """The receiver in a thread of this process; ``status`` is what it answers."""

    def __init__(self, secret: str = "", port: int = 0) -> None:
        self.server = _Server(port, secret, None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def received(self) -> list[dict[str, Any]]:
        return list(self.server.received)

    def set_secret(self, secret: str) -> None:
        self.server.secret = secret

    def set_status(self, status: int) -> None:
        self.server.status = status

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    _Server(args.port, args.secret, args.log).serve_forever()


if __name__ == "__main__":
    main()
