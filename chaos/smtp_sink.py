"""``python -m chaos.smtp_sink --port P --out FILE``: an SMTP server that accepts every email
and appends its outbox key and Message-ID to FILE, one JSON object a line, for the checker.

Nothing else of the email is kept: the recipient's address would only be one more place a
full email address sits on disk."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        row = {
            "key": str(message.get("X-Renewals-Key", "")),
            "message_id": str(message.get("Message-ID", "")),
        }
        with self.lock, self.out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        return "250 Message accepted"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.smtp_sink")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    controller = Controller(Recorder(args.out), hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"smtp sink listening on {args.port}", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
