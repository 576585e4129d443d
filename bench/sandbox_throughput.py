"""Throughput of the FastStar sandbox under a realistic renewal-worker mix.

Starts ``python -m renewals.sandbox`` as a separate process, saves one 4242 card, then
drives for a bounded time (default 10 s):

* 80 % off-session charges, each with its own Idempotency-Key (the renewal hot path),
* 10 % ``GET /public/customers/:id`` and 10 % ``GET /public/customers/:id/payment-methods``.

Load generator: ``wrk`` with a Lua script when it is installed (Debian package ``wrk``), else
a built-in raw-socket asyncio generator in its own process (keep-alive HTTP/1.1, no client
library overhead) so the generator is not the bottleneck. Afterwards the executed-charge log
is checked against the number of charges the generator saw succeed.

    python bench/sandbox_throughput.py [--seconds 10] [--connections 64] [--state FILE]
        [--tool auto|wrk|python] [--min-rps 2000]

Exits 1 if the measured rate is below ``--min-rps``. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from multiprocessing.queues import Queue
from pathlib import Path

import httpx

from renewals.sandbox.client import SandboxCards

API_KEY = "sk_test_bench"
CONTENT_LENGTH = re.compile(rb"(?i)content-length: (\d+)")
CHARGE_BODY = '{{"payment_method_id":"{pm}","amount":1999,"currency":"USD","off_session":true}}'

WRK_SCRIPT = """
local charge_path = "/api/v1/public/customers/{cus}/charge"
local customer_path = "/api/v1/public/customers/{cus}"
local cards_path = "/api/v1/public/customers/{cus}/payment-methods"
local body = '{body}'
local counter = 0
local prefix = "{run}"
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_no", next_thread)
end

request = function()
  counter = counter + 1
  local slot = counter % 10
  if slot < 8 then
    local headers = {{}}
    headers["X-API-Key"] = "{key}"
    headers["Content-Type"] = "application/json"
    headers["Idempotency-Key"] = prefix .. "-" .. thread_no .. "-" .. counter
    return wrk.format("POST", charge_path, headers, body)
  end
  local headers = {{}}
  headers["X-API-Key"] = "{key}"
  if slot == 8 then
    return wrk.format("GET", customer_path, headers)
  end
  return wrk.format("GET", cards_path, headers)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_sandbox(port: int, state: Path | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "renewals.sandbox", "--port", str(port)]
    if state is not None:
        command += ["--state", str(state)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("sandbox did not start")


# -- wrk ---------------------------------------------------------------------------------


def run_wrk(port: int, cus: str, pm: str, seconds: float, connections: int) -> tuple[float, int]:
    """(requests/s, non-2xx count) as wrk reports them."""
    script = WRK_SCRIPT.format(
        cus=cus, body=CHARGE_BODY.format(pm=pm), run=uuid.uuid4().hex[:8], key=API_KEY
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        output = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                handle.name,
                f"http://127.0.0.1:{port}/",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    print(output.rstrip())
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rate is None:
        raise SystemExit("could not read wrk's output")
    return float(rate.group(1)), int(non_2xx.group(1)) if non_2xx else 0


# -- built-in raw-socket generator ---------------------------------------------------------


async def _connection(
    port: int, cus: str, pm: str, deadline: float, run: str, conn_no: int, counts: dict[str, int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = CHARGE_BODY.format(pm=pm).encode()
    common = f"Host: 127.0.0.1:{port}\r\nX-API-Key: {API_KEY}\r\n"
    gets = [
        f"GET /api/v1/public/customers/{cus} HTTP/1.1\r\n{common}\r\n".encode(),
        f"GET /api/v1/public/customers/{cus}/payment-methods HTTP/1.1\r\n{common}\r\n".encode(),
    ]
    counter = 0
    while time.monotonic() < deadline:
        counter += 1
        slot = counter % 10
        if slot < 8:
            request = (
                f"POST /api/v1/public/customers/{cus}/charge HTTP/1.1\r\n{common}"
                f"Idempotency-Key: {run}-{conn_no}-{counter}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
        else:
            request = gets[slot - 8]
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(CONTENT_LENGTH.findall(head)[0])
        await reader.readexactly(length)
        counts["requests"] += 1
        if status != 200:
            counts["non_2xx"] += 1
        elif slot < 8:
            counts["charges"] += 1
    writer.close()


def _python_worker(
    args: tuple[int, str, str, float, int, str], queue: Queue[dict[str, int]]
) -> None:
    port, cus, pm, seconds, connections, run = args
    counts = {"requests": 0, "non_2xx": 0, "charges": 0}

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(_connection(port, cus, pm, deadline, run, n, counts) for n in range(connections))
        )

    started = time.monotonic()
    asyncio.run(main())
    counts["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    queue.put(counts)


def run_python(port: int, cus: str, pm: str, seconds: float, connections: int) -> tuple[float, int]:
    queue: Queue[dict[str, int]] = multiprocessing.Queue()
    run = uuid.uuid4().hex[:8]
    worker = multiprocessing.Process(
        target=_python_worker, args=((port, cus, pm, seconds, connections, run), queue)
    )
    worker.start()
    counts = queue.get()
    worker.join()
    rate = counts["requests"] / (counts["elapsed_ms"] / 1000)
    print(
        f"python generator: {counts['requests']} requests in {counts['elapsed_ms']} ms "
        f"over {connections} connections, non-2xx {counts['non_2xx']}"
    )
    return rate, counts["non_2xx"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--state", type=Path, default=None, help="run with a SQLite state file")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--min-rps", type=float, default=2000.0)
    args = parser.parse_args()

    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    port = free_port()
    sandbox = start_sandbox(port, args.state)
    try:
        base_url = f"http://127.0.0.1:{port}/api/v1"
        cus, pm = SandboxCards(base_url, API_KEY).save_card(
            email="bench@example.com", name="Bench", number="4242424242424242"
        )
        runner = run_wrk if tool == "wrk" else run_python
        rate, non_2xx = runner(port, cus, pm, args.seconds, args.connections)
        charges = httpx.get(f"{base_url}/sandbox/charges", timeout=60).json()["data"]
        keys = {charge["idempotency_key"] for charge in charges}
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=15)

    state_note = f", state file {args.state}" if args.state else ", in-memory state"
    print(
        json.dumps(
            {
                "tool": tool,
                "seconds": args.seconds,
                "connections": args.connections,
                "requests_per_s": round(rate),
                "non_2xx": non_2xx,
                "executed_charges": len(charges),
                "distinct_idempotency_keys": len(keys),
            }
        )
    )
    print(f"sandbox throughput: {rate:,.0f} requests/s ({tool}{state_note})")
    if non_2xx or len(keys) != len(charges):
        raise SystemExit("unexpected failures or duplicate charges during the run")
    if rate < args.min_rps:
        raise SystemExit(f"below the {args.min_rps:,.0f} requests/s target")


if __name__ == "__main__":
    main()
