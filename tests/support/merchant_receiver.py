"""A merchant's backend for the tests: a real HTTP server on a loopback port that verifies
each delivery with the snippet published in docs/merchant-webhooks.md (read from the page
itself), records every raw delivery, and answers with the statuses it is told to."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "merchant-webhooks.md"

Verify = Callable[[str, str, bytes, int], bool]


def documented_verifier() -> Verify:
    """``verify_renewals_signature`` exactly as the page publishes it: its first Python
    block, executed."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, f"{DOC} has no python block"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    verify: Verify = namespace["verify_renewals_signature"]
    return verify


@dataclass(frozen=True)
class Delivery:
    event_id: str
    signature: str
    body: bytes
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """What arrived. ``answers`` are the statuses of the next requests (one each), then 200;
    a delivery whose signature fails is answered 401 and recorded as unverified. The next
    ``stall`` deliveries are recorded, then left unanswered until ``release`` is set (a
    POST in flight, for a test to kill the worker that made it)."""

    url: str
    secret: str
    deliveries: list[Delivery] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    stall: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def events(self) -> dict[str, dict[str, Any]]:
        """Every verified event once, by id (what a receiver that dedupes keeps)."""
        return {d.event_id: d.event for d in self.received() if d.verified}

    def types_in_order(self) -> list[str]:
        """The deduplicated events' types, in the order they first arrived."""
        seen: dict[str, str] = {}
        for d in self.received():
            if d.verified:
                seen.setdefault(d.event_id, d.event["type"])
        return list(seen.values())


@contextmanager
def merchant_receiver(secret: str) -> Iterator[Receiver]:
    verify = documented_verifier()
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/renewals", secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            signature = self.headers.get("Renewals-Signature", "")
            verified = verify(receiver.secret, signature, body, 300)
            with receiver.lock:
                receiver.deliveries.append(
                    Delivery(self.headers.get("Renewals-Event-Id", ""), signature, body, verified)
                )
                status = receiver.answers.pop(0) if receiver.answers else 200
                stalled, receiver.stall = receiver.stall > 0, max(0, receiver.stall - 1)
            if stalled:
                receiver.release.wait(60)
            self.send_response(status if verified else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def handle_one_request(self) -> None:
            with suppress(OSError):  # the worker that sent it may be gone (killed)
                super().handle_one_request()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
